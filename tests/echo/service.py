"""The echo service: observe (client), plan (planner), apply (client), for one spec and one token."""

from __future__ import annotations

from collections.abc import Collection

from pydantic import SecretStr

from reconciler.fleet import Fleet
from reconciler.integrations.base import IntegrationService
from reconciler.models.base import Action
from reconciler.models.target import Target, normalize_base_url
from reconciler.settings import Settings
from tests.echo import planner
from tests.echo.client import EchoClient
from tests.echo.models import AddItem, EchoSpec, EchoState, RemoveItem


class EchoService(IntegrationService):
    def __init__(self, spec: EchoSpec, client: EchoClient) -> None:
        self.spec = spec
        self.client = client

    @classmethod
    def create(
        cls, spec: EchoSpec, token: SecretStr, settings: Settings, fleet: Fleet | None = None
    ) -> EchoService:
        return cls(spec, EchoClient(str(spec.url), token, settings))

    def plan(self) -> list[Action]:
        return planner.plan(self.spec.items, EchoState(items=self.client.items()))

    def plan_teardown(self) -> list[Action]:
        return planner.plan_teardown(self.spec.items, EchoState(items=self.client.items()))

    def apply_one(self, action: Action) -> None:
        match action:
            case AddItem():
                self.client.add(action.target)
            case RemoveItem():
                self.client.remove(action.target)
            case _:
                raise TypeError(f"not an echo action: {action.type}")

    def targets(self) -> list[Target]:
        base = normalize_base_url(str(self.spec.url))
        return [
            Target(key=f"echo:{base}:item:{item}", name=item, label=f"echo item {item}")
            for item in self.spec.items
        ]

    def exclude(self, names: Collection[str]) -> None:
        self.spec = self.spec.model_copy(update={"items": [i for i in self.spec.items if i not in names]})

    def identity(self) -> str:
        return f"a token of the echo service at {self.client.url}"

    def close(self) -> None:
        self.client.close()
