"""Every integration the operator knows, by `spec.integration`. A new integration is one line here."""

from __future__ import annotations

from typing import Any

from reconciler.integrations.base import Integration
from reconciler.integrations.gitlab_members import GitlabMembers
from reconciler.integrations.slack_usergroups import SlackUsergroups

INTEGRATIONS: dict[str, Integration[Any]] = {
    integration.name: integration for integration in (SlackUsergroups(), GitlabMembers())
}
