"""gitlab-members: direct members of GitLab groups and projects."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import SecretStr

from reconciler.fleet import Fleet
from reconciler.integrations.base import Integration, IntegrationService
from reconciler.integrations.gitlab_members.models import GitlabMembersSpec
from reconciler.models.base import SpecModel
from reconciler.settings import Settings


class GitlabMembers(Integration[GitlabMembersSpec]):
    name: ClassVar[str] = "gitlab-members"
    spec_field: ClassVar[str] = "gitlabMembers"
    spec_model: ClassVar[type[SpecModel]] = GitlabMembersSpec
    example: ClassVar[Mapping[str, Any]] = {
        "url": "https://gitlab.example.com",
        "groups": [
            {"path": "acme/platform", "members": [{"username": "alice", "accessLevel": "maintainer"}]},
        ],
    }
    token_patterns: ClassVar[tuple[str, ...]] = (r"glpat-[A-Za-z0-9_-]+",)
    loggers: ClassVar[tuple[str, ...]] = ("gitlab",)

    def service(
        self, spec: GitlabMembersSpec, token: SecretStr, settings: Settings, fleet: Fleet | None = None
    ) -> IntegrationService:
        from reconciler.integrations.gitlab_members.service import GitlabMembersService

        return GitlabMembersService.create(spec, token, settings, fleet)

    def warm_up(self) -> None:
        importlib.import_module("reconciler.integrations.gitlab_members.service")

    def needed_scopes(self, spec: GitlabMembersSpec, *, write: bool) -> frozenset[str]:
        """Member listings and user lookups need read_api; adding, changing and removing need api."""
        return frozenset({"api"} if write else {"read_api"})

    def missing_scopes(self, needed: frozenset[str], granted: frozenset[str]) -> list[str]:
        """`api` grants everything `read_api` does."""
        covered = granted | ({"read_api"} if "api" in granted else set())
        return sorted(needed - covered)
