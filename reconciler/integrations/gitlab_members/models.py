"""GitLab members: the spec block (`spec.gitlabMembers`), the observed state, and the typed actions."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, HttpUrl, WithJsonSchema, model_validator
from pydantic.config import JsonDict

from reconciler.models.base import Action, Observed, SpecModel, reject_duplicates
from reconciler.models.target import Target, normalize_base_url

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


EXPIRES_AT_SCHEMA = {"type": "string", "maxLength": 10, "anyOf": [{"format": "date"}, {"maxLength": 0}]}
"""The CRD's form of `date | ""`: a structural schema cannot type the branches of an anyOf."""


class GitlabMember(SpecModel):
    """One direct member."""

    username: str = Field(pattern=USERNAME_PATTERN, min_length=1, max_length=100)
    """GitLab username (without '@')."""
    access_level: AccessLevelName
    """GitLab role of the member."""
    expires_at: Annotated[date | Literal[""] | None, WithJsonSchema(EXPIRES_AT_SCHEMA)] = None
    """Date (YYYY-MM-DD) on which the membership expires. Omitted or null: the member's expiry is left
    as it is; empty: no expiry (clears one)."""

    def desired_expiry(self, current: date | None) -> date | None:
        """The expiry this member should have, given the one it has (None: none, or a new member)."""
        if self.expires_at is None:
            return current
        return self.expires_at or None


class GitlabMembership(SpecModel):
    """The desired direct members of one group or project."""

    path: str = Field(pattern=PATH_PATTERN, min_length=1, max_length=1024)
    """Full path of the group or project, e.g. acme/platform."""
    members: list[GitlabMember] = Field(
        default_factory=list,
        max_length=200,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["username"]},
    )
    """Direct members, unique by username. Authoritative: direct members not listed are removed, except
    the token's own user."""

    @model_validator(mode="after")
    def _unique_members(self) -> GitlabMembership:
        reject_duplicates([m.username.casefold() for m in self.members], f"{self.path}: member")
        return self


BY_PATH: JsonDict = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["path"]}
NOT_EMPTY_RULE: JsonDict = {
    "rule": "(has(self.groups) && size(self.groups) > 0) || (has(self.projects) && size(self.projects) > 0)",
    "message": "gitlabMembers needs at least one entry in groups or projects",
    "reason": "FieldValueRequired",
}
"""The CRD's CEL form of the first check of `_something_to_do`."""


class GitlabMembersSpec(SpecModel):
    """Desired direct members of GitLab groups and projects; required when integration is gitlab-members
    and forbidden otherwise. At least one group or project is needed. The lists are authoritative:
    direct members not listed are removed, except the token's own user."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [NOT_EMPTY_RULE]})

    url: HttpUrl
    """Base URL of the GitLab instance, e.g. https://gitlab.example.com."""
    groups: list[GitlabMembership] = Field(default_factory=list, max_length=10, json_schema_extra=BY_PATH)
    """Groups whose direct members are managed, unique by path. At most 10 (and 10 projects, 200 members
    each), so that the largest Reconcile stays under the API server's object size limit."""
    projects: list[GitlabMembership] = Field(default_factory=list, max_length=10, json_schema_extra=BY_PATH)
    """Projects whose direct members are managed, unique by path (at most 10)."""

    @model_validator(mode="after")
    def _something_to_do(self) -> GitlabMembersSpec:
        if not self.groups and not self.projects:
            raise ValueError("gitlabMembers needs at least one entry in groups or projects")
        reject_duplicates([g.path.casefold() for g in self.groups], "group path")
        reject_duplicates([p.path.casefold() for p in self.projects], "project path")
        return self


def level_name(level: int) -> str:
    """`maintainer` for 40; levels reconciler does not manage (5 = minimal access) by number."""
    for name, value in ACCESS_LEVELS.items():
        if value == level:
            return name
    return "minimal access" if level == 5 else f"access level {level}"


# --- what GitLab has now --------------------------------------------------------------------------

SourceKind = Literal["group", "project"]


class GitlabUser(Observed):
    id: int
    username: str
    state: str = "active"

    @property
    def active(self) -> bool:
        """Blocked, deactivated, banned or pending users cannot be given access."""
        return self.state == "active"


class GitlabMemberState(GitlabUser):
    """A direct member of a group or project, as `GET /:kind/:id/members` lists it."""

    access_level: int
    expires_at: date | None = None


class GitlabSourceState(Observed):
    """The direct members of one group or project (never the inherited ones)."""

    kind: SourceKind
    path: str
    members: tuple[GitlabMemberState, ...] = ()


class GitlabState(Observed):
    """Everything the planner needs, read once per run."""

    own_user: GitlabUser
    """The token's user: never removed or demoted."""
    groups: dict[str, GitlabSourceState | None] = Field(default_factory=dict)
    """Spec path -> direct members; None when GitLab does not have (or does not show) the group."""
    projects: dict[str, GitlabSourceState | None] = Field(default_factory=dict)
    users: dict[str, GitlabUser | None] = Field(default_factory=dict)
    """Looked-up users by case-folded username (None: no such user). Only desired usernames that are
    not direct members of a listed group/project are looked up; the others are known from the lists."""


def gitlab_target(url: str, kind: str, path: str) -> Target:
    """GitLab paths are case-insensitive and one instance has many spellings of its URL."""
    return Target(
        key=f"gitlab:{normalize_base_url(url)}:{kind}:{path.strip('/').casefold()}",
        name=f"{kind}:{path}",
        label=f"GitLab {kind} {path} ({normalize_base_url(url)})",
    )


# --- actions --------------------------------------------------------------------------------------


def _expiry(expires_at: date | None) -> str:
    return f"expires {expires_at.isoformat()}" if expires_at else "no expiry"


class MemberAction(Action):
    """A change of one user's direct membership; `target` is the group or project path."""

    kind: SourceKind
    username: str
    user_id: int


class AddMember(MemberAction):
    type: Literal["add_member"] = "add_member"
    access_level: int
    expires_at: date | None = None

    @property
    def detail(self) -> str:
        text = f"{self.username} as {level_name(self.access_level)}"
        return f"{text}, {_expiry(self.expires_at)}" if self.expires_at else text


class UpdateMember(MemberAction):
    """Sets the access level and the expiry (GitLab's edit-member call takes both)."""

    type: Literal["update_member"] = "update_member"
    access_level: int
    expires_at: date | None = None
    old_access_level: int
    old_expires_at: date | None = None

    @property
    def detail(self) -> str:
        changes: list[str] = []
        if self.access_level != self.old_access_level:
            changes.append(f"{level_name(self.old_access_level)} -> {level_name(self.access_level)}")
        if self.expires_at != self.old_expires_at:
            if self.old_expires_at is None or self.expires_at is None:
                changes.append(_expiry(self.expires_at))
                if self.expires_at is None:
                    changes[-1] += f" (was {self.old_expires_at})"
            else:
                changes.append(f"expires {self.old_expires_at} -> {self.expires_at}")
        return f"{self.username}: {', '.join(changes)}"


class RemoveMember(MemberAction):
    """Removes a direct membership; from a group with `skip_subresources=true` (subgroups and projects
    keep their own memberships of the user)."""

    type: Literal["remove_member"] = "remove_member"
    access_level: int

    @property
    def detail(self) -> str:
        return f"{self.username} (was {level_name(self.access_level)})"


GitlabAction = AddMember | UpdateMember | RemoveMember
