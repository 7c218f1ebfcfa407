"""slack-usergroups: Slack user groups (handle, name, description, members, default channels)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import SecretStr

from reconciler.fleet import Fleet
from reconciler.integrations.base import Integration, IntegrationService
from reconciler.integrations.slack_usergroups.models import SlackUsergroupsSpec
from reconciler.models.base import SpecModel
from reconciler.settings import Settings


class SlackUsergroups(Integration[SlackUsergroupsSpec]):
    name: ClassVar[str] = "slack-usergroups"
    spec_field: ClassVar[str] = "slackUsergroups"
    spec_model: ClassVar[type[SpecModel]] = SlackUsergroupsSpec
    example: ClassVar[Mapping[str, Any]] = {
        "apiUrl": "https://slack.com/api/",
        "usergroups": [{"handle": "sre-oncall", "name": "SRE On-call", "users": ["alice@example.com"]}],
    }
    url_field: ClassVar[str] = "api_url"
    token_patterns: ClassVar[tuple[str, ...]] = (r"xox[abposr]-[A-Za-z0-9-]+", r"xapp-[A-Za-z0-9-]+")
    loggers: ClassVar[tuple[str, ...]] = ("slack_sdk",)

    def service(
        self, spec: SlackUsergroupsSpec, token: SecretStr, settings: Settings, fleet: Fleet | None = None
    ) -> IntegrationService:
        from reconciler.integrations.slack_usergroups.service import SlackUsergroupsService

        return SlackUsergroupsService.create(spec, token, settings, fleet)

    def warm_up(self) -> None:
        importlib.import_module("reconciler.integrations.slack_usergroups.service")

    def needed_scopes(self, spec: SlackUsergroupsSpec, *, write: bool) -> frozenset[str]:
        """usergroups.list always; users.list with e-mails when users are named (the spec names them
        by e-mail); conversations.list (public channels) when channels are; the usergroups.* writes."""
        scopes = {"usergroups:read"}
        if any(group.users for group in spec.usergroups):
            scopes |= {"users:read", "users:read.email"}
        if any(group.channels for group in spec.usergroups):
            scopes.add("channels:read")
        if write:
            scopes.add("usergroups:write")
        return frozenset(scopes)
