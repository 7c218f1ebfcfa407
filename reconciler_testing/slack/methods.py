"""The Slack Web API methods the reconciler uses, written from their documentation pages.

Why apart: each method's arguments, errors and answer shape are what the operator's client is
tested against; the server module only routes requests here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from reconciler_testing.slack.paging import paginate
from reconciler_testing.slack.state import (
    JSON,
    TEAM_NAME,
    Params,
    SlackError,
    SlackState,
    Token,
    Usergroup,
)

_CONVERSATION_TYPE_SCOPES = {
    "public_channel": "channels:read",
    "private_channel": "groups:read",
    "mpim": "mpim:read",
    "im": "im:read",
}

MethodFn = Callable[[Token, Params], JSON]


def _truthy(value: str | None) -> bool:
    """Slack booleans arrive as "true"/"1" (slack_sdk sends "1"/"0")."""
    return value is not None and value.strip().lower() in {"1", "true"}


def _csv(value: str | None) -> list[str]:
    """Array arguments are comma separated strings (JSON arrays are joined before this)."""
    if value is None:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def require_scope(tok: Token, scope: str) -> None:
    if scope not in tok.scopes:
        raise SlackError("missing_scope", needed=scope, provided=",".join(sorted(tok.scopes)))


class SlackMethods(SlackState):
    """The workspace plus its Web API methods (called with the lock held)."""

    def __init__(self, team_id: str) -> None:
        super().__init__(team_id)
        self.page_limit_cap: int = 200
        self.endless_pages: bool = False
        """Hostile: list methods always announce a next page (`next_cursor` never empty)."""
        self._methods: dict[str, tuple[str | None, MethodFn]] = {
            "auth.test": (None, self._auth_test),
            "users.list": ("users:read", self._users_list),
            "users.lookupByEmail": ("users:read.email", self._users_lookup_by_email),
            "conversations.list": (None, self._conversations_list),  # scope depends on `types`
            "usergroups.list": ("usergroups:read", self._usergroups_list),
            "usergroups.users.list": ("usergroups:read", self._usergroups_users_list),
            "usergroups.create": ("usergroups:write", self._usergroups_create),
            "usergroups.update": ("usergroups:write", self._usergroups_update),
            "usergroups.users.update": ("usergroups:write", self._usergroups_users_update),
            "usergroups.enable": ("usergroups:write", self._usergroups_enable),
            "usergroups.disable": ("usergroups:write", self._usergroups_disable),
        }

    def _paginate(self, items: list[JSON], kind: str, params: Params) -> tuple[list[JSON], str]:
        return paginate(items, kind, params, cap=self.page_limit_cap, endless=self.endless_pages)

    def _auth_test(self, tok: Token, params: Params) -> JSON:
        owner = self._users.get(tok.user_id)
        return {
            "url": f"https://{self.team_id.lower()}.slack.test/",
            "team": TEAM_NAME,
            "user": owner.name if owner else "reconciler",
            "team_id": self.team_id,
            "user_id": tok.user_id,
            "is_enterprise_install": False,
        }

    def _users_list(self, tok: Token, params: Params) -> JSON:
        with_email = "users:read.email" in tok.scopes
        members = [self._user_json(u, with_email=with_email) for u in self._users.values()]
        page, next_cursor = self._paginate(members, "user", params)
        return {
            "members": page,
            "cache_ts": int(time.time()),
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _users_lookup_by_email(self, tok: Token, params: Params) -> JSON:
        email = params.get("email")
        if email is None:
            raise SlackError("missing_argument")
        for user in self._users.values():
            # Documented: a deactivated user answers users_not_found, not a user object.
            if user.email.casefold() == email.strip().casefold() and not user.deleted:
                return {"user": self._user_json(user, with_email=True)}
        raise SlackError("users_not_found")

    def _conversations_list(self, tok: Token, params: Params) -> JSON:
        types = _csv(params.get("types")) or ["public_channel"]
        if any(t not in _CONVERSATION_TYPE_SCOPES for t in types):
            raise SlackError("invalid_types")
        for conv_type in types:
            require_scope(tok, _CONVERSATION_TYPE_SCOPES[conv_type])
        exclude_archived = _truthy(params.get("exclude_archived"))
        chans = [
            self._channel_json(c)
            for c in self._channels.values()
            if ("private_channel" if c.is_private else "public_channel") in types
            and not (exclude_archived and c.is_archived)
        ]
        page, next_cursor = self._paginate(chans, "channel", params)
        return {"channels": page, "response_metadata": {"next_cursor": next_cursor}}

    def _usergroups_list(self, tok: Token, params: Params) -> JSON:
        include_disabled = _truthy(params.get("include_disabled"))
        include_users = _truthy(params.get("include_users"))
        include_count = _truthy(params.get("include_count"))
        groups = [
            self._group_json(g, include_users=include_users, include_count=include_count)
            for g in self._groups.values()
            if include_disabled or g.date_delete == 0
        ]
        return {"usergroups": groups}

    def _find_group(self, params: Params) -> Usergroup:
        group_id = params.get("usergroup")
        if not group_id:
            raise SlackError("missing_argument")
        group = self._groups.get(group_id)
        if group is None:
            raise SlackError("no_such_subteam")
        return group

    def _usergroups_users_list(self, tok: Token, params: Params) -> JSON:
        group = self._find_group(params)
        if group.date_delete and not _truthy(params.get("include_disabled")):
            raise SlackError("no_such_subteam")
        return {"users": list(group.users)}

    def _check_unique(self, *, name: str | None, handle: str | None, exclude: str | None) -> None:
        """Names are unique among groups; handles among groups, users and channels (disabled ones too)."""
        # One pass over the groups, each name folded once: the check runs for every create and
        # rename (P5 creates 500 groups in a row).
        name_folded = name.casefold() if name is not None else None
        handle_folded = handle.casefold() if handle else None
        name_taken = handle_taken = False
        for group in self._groups.values():
            if group.id != exclude:
                name_taken = name_taken or group.name.casefold() == name_folded
                handle_taken = handle_taken or group.handle.casefold() == handle_folded
        if name_taken:
            raise SlackError("name_already_exists")
        if handle_folded is not None and (
            handle_taken
            or any(u.name.casefold() == handle_folded for u in self._users.values() if not u.deleted)
            or any(c.name.casefold() == handle_folded for c in self._channels.values())
        ):
            raise SlackError("handle_already_exists")

    def _channels_param(self, params: Params) -> list[str] | None:
        if "channels" not in params:
            return None
        channels = list(dict.fromkeys(_csv(params["channels"])))
        if any(c not in self._channels for c in channels):
            raise SlackError("invalid_channel_provided")
        return channels

    def _usergroups_create(self, tok: Token, params: Params) -> JSON:
        name = params.get("name")
        if name is None:
            raise SlackError("missing_argument")
        if not name.strip():
            raise SlackError("missing_subteam_name")
        handle = params.get("handle", "").strip()
        self._check_unique(name=name, handle=handle, exclude=None)
        channels = self._channels_param(params) or []
        now = self._now()
        group = Usergroup(
            id=self._next_id("S"),
            name=name,
            handle=handle,
            description=params.get("description", ""),
            users=[],
            channels=channels,
            date_create=now,
            date_update=now,
            date_delete=0,
            created_by=tok.user_id,
            updated_by=tok.user_id,
        )
        self._groups[group.id] = group
        return {"usergroup": self._group_json(group, include_users=False, include_count=self._count(params))}

    @staticmethod
    def _count(params: Params) -> bool:
        return _truthy(params.get("include_count"))

    def _usergroups_update(self, tok: Token, params: Params) -> JSON:
        group = self._find_group(params)
        name = params.get("name")
        if name is not None and not name.strip():
            raise SlackError("missing_subteam_name")
        handle = params.get("handle")
        self._check_unique(name=name, handle=handle.strip() if handle else None, exclude=group.id)
        channels = self._channels_param(params)
        if name is not None:
            group.name = name
        if handle is not None and handle.strip():
            group.handle = handle.strip()
        if "description" in params:
            group.description = params["description"]
        if channels is not None:
            group.channels = channels
        group.date_update, group.updated_by = self._now(), tok.user_id
        return {"usergroup": self._group_json(group, include_users=True, include_count=self._count(params))}

    def _usergroups_users_update(self, tok: Token, params: Params) -> JSON:
        group = self._find_group(params)
        users = list(dict.fromkeys(_csv(params.get("users"))))
        if not users:
            # Documented: "You cannot use this method to remove all members"; disable the group instead.
            raise SlackError("no_users_provided")
        for user_id in users:
            user = self._users.get(user_id)
            if user is None or user.deleted:
                raise SlackError("invalid_users")
            if user.is_bot:
                raise SlackError("invalid_user")
        group.users = users
        group.date_update, group.updated_by = self._now(), tok.user_id
        return {"usergroup": self._group_json(group, include_users=True, include_count=self._count(params))}

    def _usergroups_enable(self, tok: Token, params: Params) -> JSON:
        group = self._find_group(params)
        group.date_delete, group.deleted_by = 0, None
        group.date_update, group.updated_by = self._now(), tok.user_id
        return {"usergroup": self._group_json(group, include_users=False, include_count=self._count(params))}

    def _usergroups_disable(self, tok: Token, params: Params) -> JSON:
        group = self._find_group(params)
        now = self._now()
        group.date_delete, group.deleted_by = now, tok.user_id
        group.date_update, group.updated_by = now, tok.user_id
        return {"usergroup": self._group_json(group, include_users=False, include_count=self._count(params))}
