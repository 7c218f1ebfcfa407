"""The Slack fake's workspace: tokens, users, channels, user groups, and their JSON shapes.

Why apart from the HTTP side: tests seed and inspect this state directly; the methods module
changes it the way Slack's Web API does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]
Params = dict[str, str]

DEFAULT_SCOPES: frozenset[str] = frozenset(
    {"users:read", "users:read.email", "channels:read", "groups:read", "usergroups:read", "usergroups:write"}
)
WRITE_METHODS: frozenset[str] = frozenset(
    {
        "usergroups.create",
        "usergroups.update",
        "usergroups.users.update",
        "usergroups.enable",
        "usergroups.disable",
    }
)
TEAM_ID = "T0001"
TIER_2 = 20
TIERS: dict[str, int] = {"auth.test": 100, "users.lookupByEmail": 50, "conversations.info": 50}
"""Documented per-method tiers (calls a minute per app and workspace): auth.test is special
(Tier 4-like), users.lookupByEmail and conversations.info Tier 3; usergroups.*, users.list and
conversations.list Tier 2."""
TEAM_NAME = "Reconciler Test"
DEFAULT_PAGE_LIMIT = 100


class SlackError(Exception):
    """An ``ok: false`` answer; ``extra`` adds fields such as ``needed``/``provided``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass
class Token:
    token: str
    scopes: frozenset[str]
    inactive: bool
    user_id: str
    id: int = 0
    """Registration order: names the token in the call log without its secret."""


@dataclass
class User:
    id: str
    email: str
    name: str
    real_name: str
    deleted: bool
    is_bot: bool


@dataclass
class Channel:
    id: str
    name: str
    is_private: bool
    is_archived: bool
    created: int


@dataclass
class Usergroup:
    id: str
    name: str
    handle: str
    description: str
    users: list[str]
    channels: list[str]
    date_create: int
    date_update: int
    date_delete: int
    created_by: str
    updated_by: str
    deleted_by: str | None = None


class SlackState:
    """One in-memory workspace. Every access holds `_lock`: the HTTP server answers on many threads."""

    def __init__(self, team_id: str = TEAM_ID) -> None:
        self.team_id = team_id
        self._lock = threading.RLock()
        self._tokens: dict[str, Token] = {}
        self._users: dict[str, User] = {}
        self._channels: dict[str, Channel] = {}
        self._groups: dict[str, Usergroup] = {}
        self._counters: dict[str, int] = {}
        self._last_ts = 0

    # ------------------------------------------------------------------ state helpers

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            n = self._counters.get(prefix, 0) + 1
            self._counters[prefix] = n
            return f"{prefix}{n:04d}"

    def _now(self) -> int:
        """Strictly increasing epoch seconds so every mutation visibly moves ``date_update``."""
        with self._lock:
            self._last_ts = max(int(time.time()), self._last_ts + 1)
            return self._last_ts

    def add_token(
        self,
        token: str,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        *,
        inactive: bool = False,
        user_id: str | None = None,
    ) -> None:
        """Register a token; ``user_id`` defaults to a bot-ish id that is not listed by users.list."""
        with self._lock:
            owner = user_id if user_id is not None else self._next_id("UBOT")
            self._tokens[token] = Token(token, frozenset(scopes), inactive, owner, id=len(self._tokens) + 1)

    def add_user(
        self, email: str, *, name: str | None = None, deleted: bool = False, is_bot: bool = False
    ) -> str:
        """Add a workspace member and return its ``U....`` id."""
        with self._lock:
            user_id = self._next_id("U")
            handle = name if name is not None else email.split("@", 1)[0]
            self._users[user_id] = User(user_id, email, handle, handle, deleted, is_bot)
            return user_id

    def add_channel(self, name: str, *, is_private: bool = False, is_archived: bool = False) -> str:
        """Add a channel and return its ``C....`` id."""
        with self._lock:
            channel_id = self._next_id("C")
            self._channels[channel_id] = Channel(channel_id, name, is_private, is_archived, self._now())
            return channel_id

    def add_usergroup(
        self,
        handle: str,
        *,
        name: str,
        description: str = "",
        users: Iterable[str] = (),
        channels: Iterable[str] = (),
        disabled: bool = False,
    ) -> str:
        """Seed a user group directly (no API call logged) and return its ``S....`` id."""
        with self._lock:
            members, chans = list(dict.fromkeys(users)), list(dict.fromkeys(channels))
            unknown = [u for u in members if u not in self._users] + [
                c for c in chans if c not in self._channels
            ]
            if unknown:
                raise ValueError(f"unknown ids: {unknown}")
            if any(g.handle.casefold() == handle.casefold() for g in self._groups.values()):
                raise ValueError(f"handle already used: {handle}")
            if any(g.name.casefold() == name.casefold() for g in self._groups.values()):
                raise ValueError(f"name already used: {name}")
            now = self._now()
            group_id = self._next_id("S")
            self._groups[group_id] = Usergroup(
                id=group_id,
                name=name,
                handle=handle,
                description=description,
                users=members,
                channels=chans,
                date_create=now,
                date_update=now,
                date_delete=now if disabled else 0,
                created_by="USLACKBOT",
                updated_by="USLACKBOT",
                deleted_by="USLACKBOT" if disabled else None,
            )
            return group_id

    def usergroup(self, handle: str) -> JSON:
        """The group's current Slack JSON (with ``users`` and ``user_count``); KeyError if absent."""
        with self._lock:
            for group in self._groups.values():
                if group.handle == handle:
                    return self._group_json(group, include_users=True, include_count=True)
        raise KeyError(handle)

    def usergroups(self) -> list[JSON]:
        """Every group, disabled ones included, in creation order."""
        with self._lock:
            return [
                self._group_json(g, include_users=True, include_count=True) for g in self._groups.values()
            ]

    def load_seed(self, seed: Mapping[str, Any]) -> None:
        """Load ``{"tokens", "users", "channels", "usergroups"}``; group members may be ids or emails."""
        for tok in seed.get("tokens", []):
            if isinstance(tok, str):
                self.add_token(tok)
            else:
                self.add_token(
                    tok["token"],
                    tok.get("scopes", DEFAULT_SCOPES),
                    inactive=bool(tok.get("inactive", False)),
                    user_id=tok.get("user_id"),
                )
        for user in seed.get("users", []):
            if isinstance(user, str):
                self.add_user(user)
            else:
                self.add_user(
                    user["email"],
                    name=user.get("name"),
                    deleted=bool(user.get("deleted", False)),
                    is_bot=bool(user.get("is_bot", False)),
                )
        for chan in seed.get("channels", []):
            if isinstance(chan, str):
                self.add_channel(chan)
            else:
                self.add_channel(
                    chan["name"],
                    is_private=bool(chan.get("is_private", False)),
                    is_archived=bool(chan.get("is_archived", False)),
                )
        with self._lock:
            by_email = {u.email.casefold(): u.id for u in self._users.values()}
            by_channel = {c.name: c.id for c in self._channels.values()}
        for group in seed.get("usergroups", []):
            self.add_usergroup(
                group["handle"],
                name=group["name"],
                description=group.get("description", ""),
                users=[by_email.get(u.casefold(), u) for u in group.get("users", [])],
                channels=[by_channel.get(c.lstrip("#"), c) for c in group.get("channels", [])],
                disabled=bool(group.get("disabled", False)),
            )

    def deactivate_user(self, email: str) -> None:
        """Deactivate a member (as an admin does): lookups stop finding it, updates refuse it."""
        with self._lock:
            for user in self._users.values():
                if user.email.casefold() == email.casefold():
                    user.deleted = True
                    return
        raise KeyError(email)

    def rename_channel(self, old: str, new: str) -> None:
        with self._lock:
            for chan in self._channels.values():
                if chan.name == old:
                    chan.name = new
                    return
        raise KeyError(old)

    # ------------------------------------------------------------------ JSON shapes

    @staticmethod
    def _user_json(user: User, *, with_email: bool) -> JSON:
        profile: JSON = {
            "real_name": user.real_name,
            "real_name_normalized": user.real_name,
            "display_name": user.name,
            "display_name_normalized": user.name,
        }
        if with_email:
            profile["email"] = user.email
        return {
            "id": user.id,
            "team_id": TEAM_ID,
            "name": user.name,
            "deleted": user.deleted,
            "real_name": user.real_name,
            "is_bot": user.is_bot,
            "is_app_user": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "profile": profile,
        }

    @staticmethod
    def _channel_json(chan: Channel) -> JSON:
        return {
            "id": chan.id,
            "name": chan.name,
            "name_normalized": chan.name,
            "is_channel": not chan.is_private,
            "is_group": chan.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": chan.is_private,
            "is_archived": chan.is_archived,
            "is_general": False,
            "is_shared": False,
            "is_member": False,
            "created": chan.created,
            "context_team_id": TEAM_ID,
            "num_members": 0,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        }

    @staticmethod
    def _group_json(group: Usergroup, *, include_users: bool, include_count: bool) -> JSON:
        data: JSON = {
            "id": group.id,
            "team_id": TEAM_ID,
            "is_usergroup": True,
            "is_subteam": True,
            "name": group.name,
            "description": group.description,
            "handle": group.handle,
            "is_external": False,
            "date_create": group.date_create,
            "date_update": group.date_update,
            "date_delete": group.date_delete,
            "auto_type": None,
            "auto_provision": False,
            "enterprise_subteam_id": "",
            "created_by": group.created_by,
            "updated_by": group.updated_by,
            "deleted_by": group.deleted_by,
            "prefs": {"channels": list(group.channels), "groups": []},
            "channel_count": len(group.channels),
        }
        if include_users:
            data["users"] = list(group.users)
        if include_count:
            data["user_count"] = len(group.users)
        return data
