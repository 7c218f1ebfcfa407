"""GitLab members: the spec block (`spec.gitlabMembers`)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, HttpUrl, model_validator

from reconciler.models.base import SpecModel, reject_duplicates

PATH_PATTERN = r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*(/[A-Za-z0-9_.][A-Za-z0-9_.-]*)*$"
USERNAME_PATTERN = r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$"

AccessLevelName = Literal["guest", "planner", "reporter", "developer", "maintainer", "owner"]

ACCESS_LEVELS: dict[str, int] = {
    "guest": 10,
    "planner": 15,
    "reporter": 20,
    "developer": 30,
    "maintainer": 40,
    "owner": 50,
}


class GitlabMember(SpecModel):
    username: str = Field(pattern=USERNAME_PATTERN, min_length=1, max_length=255)
    access_level: AccessLevelName
    expires_at: date | None = None


class GitlabMembership(SpecModel):
    """Desired direct members of one group or project, by full path."""

    path: str = Field(pattern=PATH_PATTERN, min_length=1, max_length=1024)
    members: list[GitlabMember] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _unique_members(self) -> GitlabMembership:
        reject_duplicates([m.username.casefold() for m in self.members], f"{self.path}: member")
        return self


class GitlabMembersSpec(SpecModel):
    """`spec.gitlabMembers`."""

    url: HttpUrl
    groups: list[GitlabMembership] = Field(default_factory=list, max_length=100)
    projects: list[GitlabMembership] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _something_to_do(self) -> GitlabMembersSpec:
        if not self.groups and not self.projects:
            raise ValueError("gitlabMembers needs at least one entry in groups or projects")
        reject_duplicates([g.path.casefold() for g in self.groups], "group path")
        reject_duplicates([p.path.casefold() for p in self.projects], "project path")
        return self
