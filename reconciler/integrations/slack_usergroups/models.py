"""Slack user groups: the spec block, the observed state, and the typed actions of a plan."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, HttpUrl, model_validator

from reconciler.models.base import Action, Observed, SpecModel, reject_duplicates
from reconciler.models.target import Target

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
HANDLE_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
CHANNEL_PATTERN = r"^#?[a-z0-9][a-z0-9._-]*$"


def _lower(text: str) -> str:
    return text.lower()


def _strip_hash(text: str) -> str:
    return text.removeprefix("#")


Email = Annotated[
    str,
    Field(pattern=EMAIL_PATTERN, max_length=76, description="E-mail address of a Slack user."),
    AfterValidator(_lower),
]
ChannelName = Annotated[
    str,
    Field(pattern=CHANNEL_PATTERN, max_length=81, description="A channel name, e.g. sre or '#sre'."),
    AfterValidator(_strip_hash),
]


class SlackUsergroup(SpecModel):
    """One desired user group. name, description and channels are managed only when set: omitted or
    null leaves Slack's value alone, and an empty description or channel list clears it. users is always
    authoritative."""

    handle: str = Field(pattern=HANDLE_PATTERN, min_length=1, max_length=80)
    """The user group's handle (what people type after @), e.g. sre-oncall."""
    name: str | None = Field(default=None, min_length=1, max_length=255)
    """The user group's display name, unique (ignoring case) in this list. Omitted: left as it is (a new
    group is named after its handle)."""
    description: str | None = Field(default=None, max_length=500)
    """The user group's purpose, shown in Slack. Omitted: left as it is; empty: cleared."""
    channels: list[ChannelName] | None = Field(
        default=None, max_length=50, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Default channels of the user group, by name (with or without '#'). Omitted: left as they are;
    empty list: cleared."""
    users: list[Email] = Field(
        default_factory=list, max_length=1000, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Members, by e-mail address (matched case-insensitively). Authoritative: members not listed are
    removed. Empty: the user group is disabled, as Slack refuses empty user groups."""

    @model_validator(mode="after")
    def _no_duplicates(self) -> SlackUsergroup:
        reject_duplicates(self.users, f"usergroup {self.handle}: user")
        reject_duplicates(self.channels or [], f"usergroup {self.handle}: channel")
        return self


class SlackUsergroupsSpec(SpecModel):
    """Desired Slack user groups; required when integration is slack-usergroups and forbidden otherwise.
    The lists are authoritative: users not listed are removed from the user group."""

    api_url: HttpUrl = HttpUrl("https://slack.com/api/")
    """Base URL of the Slack Web API. Other values are for GovSlack and for tests."""
    usergroups: list[SlackUsergroup] = Field(
        min_length=1,
        max_length=8,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["handle"]},
    )
    """The user groups to manage, unique by handle. At most 8 (with 1,000 users each), so that the largest
    Reconcile stays under the API server's object size limit; manage more groups with more Reconciles."""

    @model_validator(mode="after")
    def _unique(self) -> SlackUsergroupsSpec:
        reject_duplicates([g.handle for g in self.usergroups], "usergroup handle")
        reject_duplicates([g.name.casefold() for g in self.usergroups if g.name], "usergroup name")
        return self


# --- what Slack has now ---------------------------------------------------------------------------


class SlackUser(Observed):
    id: str
    email: str | None = None
    deleted: bool = False


class SlackUsergroupState(Observed):
    id: str
    handle: str
    name: str
    description: str = ""
    enabled: bool = True
    users: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()


class SlackState(Observed):
    """Everything the planner needs, read once per run."""

    usergroups: tuple[SlackUsergroupState, ...] = ()
    users: tuple[SlackUser, ...] = ()
    channels: dict[str, str] = Field(default_factory=dict)
    """Channel name -> id."""


def slack_usergroup_target(team_id: str, handle: str) -> Target:
    return Target(
        key=f"slack:{team_id}:usergroup:{handle.lower()}",
        name=handle,
        label=f"Slack user group @{handle} (workspace {team_id})",
    )


# --- actions --------------------------------------------------------------------------------------


def _channels(names: tuple[str, ...]) -> str:
    return ", ".join(f"#{name}" for name in names) or "none"


class CreateUsergroup(Action):
    type: Literal["create_usergroup"] = "create_usergroup"
    name: str
    description: str
    channel_ids: tuple[str, ...] = ()
    channel_names: tuple[str, ...] = ()

    @property
    def detail(self) -> str:
        return f"name {self.name!r}, channels {_channels(self.channel_names)}"


class EnableUsergroup(Action):
    type: Literal["enable_usergroup"] = "enable_usergroup"
    usergroup_id: str

    @property
    def detail(self) -> str:
        return "re-enable the disabled user group"


class UpdateUsergroup(Action):
    """Changes name, description and/or default channels; fields left None stay as they are."""

    type: Literal["update_usergroup"] = "update_usergroup"
    usergroup_id: str
    name: str | None = None
    description: str | None = None
    channel_ids: tuple[str, ...] | None = None
    changes: tuple[str, ...] = ()

    @property
    def detail(self) -> str:
        return "; ".join(self.changes)


class AddUsers(Action):
    """Users to add. Slack sets the whole list at once, so `user_ids` is the complete new list."""

    type: Literal["add_users"] = "add_users"
    usergroup_id: str | None
    emails: tuple[str, ...]
    user_ids: tuple[str, ...]

    @property
    def detail(self) -> str:
        return ", ".join(self.emails)


class RemoveUsers(Action):
    type: Literal["remove_users"] = "remove_users"
    usergroup_id: str
    emails: tuple[str, ...]
    user_ids: tuple[str, ...]

    @property
    def detail(self) -> str:
        return ", ".join(self.emails)


class DisableUsergroup(Action):
    type: Literal["disable_usergroup"] = "disable_usergroup"
    usergroup_id: str | None
    why: str = "no users listed; Slack refuses empty user groups, so it is disabled"

    @property
    def detail(self) -> str:
        return self.why


SlackAction = CreateUsergroup | EnableUsergroup | UpdateUsergroup | AddUsers | RemoveUsers | DisableUsergroup
