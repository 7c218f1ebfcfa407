"""echo: an integration that exists only in the tests, to prove that one folder plus one registry line
is all an integration needs. Its "service" is a list of items behind a tiny HTTP API
(tests/echo/server.py); a spec lists the items that must be there.

It plugs in as any other package would: through the `reconciler.integrations` entry-point group
(tests/echo/plugin.py writes that distribution's metadata for an operator subprocess).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import SecretStr

from reconciler.fleet import Fleet
from reconciler.integrations.base import Integration, IntegrationService
from reconciler.models.base import SpecModel
from reconciler.settings import Settings
from tests.echo.models import EchoSpec


class Echo(Integration[EchoSpec]):
    name: ClassVar[str] = "echo"
    spec_field: ClassVar[str] = "echo"
    spec_model: ClassVar[type[SpecModel]] = EchoSpec
    example: ClassVar[Mapping[str, Any]] = {"url": "http://127.0.0.1:8080", "items": ["hello"]}
    token_patterns: ClassVar[tuple[str, ...]] = (r"echo-token-[a-z0-9]+",)

    def service(
        self, spec: EchoSpec, token: SecretStr, settings: Settings, fleet: Fleet | None = None
    ) -> IntegrationService:
        from tests.echo.service import EchoService

        return EchoService.create(spec, token, settings, fleet)

    def needed_scopes(self, spec: EchoSpec, *, write: bool) -> frozenset[str]:
        return frozenset({"write"} if write else {"read"})
