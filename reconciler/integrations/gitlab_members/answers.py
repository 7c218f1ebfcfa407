"""GitLab's answers, validated: the parts of each REST v4 reply reconciler reads, as pydantic models.

Unknown fields are ignored; a missing or mistyped one fails `parse_answer`, so a malformed answer is
reported and retried, never half-used.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, TypeAdapter

from reconciler.integrations.gitlab_members.models import GitlabMemberState, GitlabUser


class Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class UserAnswer(Answer):
    id: int
    username: str
    state: str = "active"

    def to_user(self) -> GitlabUser:
        return GitlabUser(id=self.id, username=self.username, state=self.state)


class MemberAnswer(UserAnswer):
    access_level: int
    expires_at: date | None = None

    def to_member(self) -> GitlabMemberState:
        return GitlabMemberState(
            id=self.id,
            username=self.username,
            state=self.state,
            access_level=self.access_level,
            expires_at=self.expires_at,
        )


class TokenInfoAnswer(Answer):
    scopes: list[str]


USER = TypeAdapter(UserAnswer)
TOKEN_INFO = TypeAdapter(TokenInfoAnswer)
USERS = TypeAdapter(list[UserAnswer])
MEMBERS = TypeAdapter(list[MemberAnswer])
