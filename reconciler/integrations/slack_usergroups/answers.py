"""Slack's answers, validated: the parts of each Web API reply reconciler reads, as pydantic models.

Unknown fields are ignored (Slack adds them freely); a missing or mistyped one fails `parse_answer`,
so a malformed answer is reported and retried, never half-used.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from reconciler.integrations.slack_usergroups.models import SlackUser, SlackUsergroupState


class Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ProfileAnswer(Answer):
    email: str | None = None


class MemberAnswer(Answer):
    id: str
    deleted: bool = False
    is_bot: bool = False
    profile: ProfileAnswer = Field(default_factory=ProfileAnswer)

    def to_user(self) -> SlackUser:
        return SlackUser(
            id=self.id, email=self.profile.email.lower() if self.profile.email else None, deleted=self.deleted
        )


class ChannelAnswer(Answer):
    id: str
    name: str
    is_archived: bool = False


class PrefsAnswer(Answer):
    channels: list[str] = Field(default_factory=list)


class UsergroupNameAnswer(Answer):
    """An unmanaged group: only what name-conflict checks need."""

    id: str
    handle: str
    name: str

    def to_state(self) -> SlackUsergroupState:
        return SlackUsergroupState(id=self.id, handle=self.handle, name=self.name)


class UsergroupAnswer(Answer):
    id: str
    handle: str
    name: str
    description: str | None = ""
    date_delete: int = 0
    users: list[str] = Field(default_factory=list)
    prefs: PrefsAnswer = Field(default_factory=PrefsAnswer)

    def to_state(self) -> SlackUsergroupState:
        return SlackUsergroupState(
            id=self.id,
            handle=self.handle,
            name=self.name,
            description=self.description or "",
            enabled=self.date_delete == 0,
            users=frozenset(self.users),
            channels=frozenset(self.prefs.channels),
        )


class AuthAnswer(Answer):
    team_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$")


AUTH = TypeAdapter(AuthAnswer)
USERGROUPS = TypeAdapter(list[UsergroupAnswer])
USERGROUP = TypeAdapter(UsergroupAnswer)
USERGROUP_NAMES = TypeAdapter(list[UsergroupNameAnswer])
MEMBERS = TypeAdapter(list[MemberAnswer])
MEMBER = TypeAdapter(MemberAnswer)
CHANNELS = TypeAdapter(list[ChannelAnswer])
