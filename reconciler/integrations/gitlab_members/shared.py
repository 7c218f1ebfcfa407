"""The GitLab user directory every Reconcile on one instance shares, in Valkey: username -> user id
and state, keyed by the account the rate budget uses (instance + token user).

Only usernames a run is about to add are looked up (the members listed already name everyone
else), so an entry is trusted only when its lookup started at or after the run's `fresh_after`: a
run asked for explicitly never adds a user on an answer older than its request, and a periodic
run never on one older than `snapshot_max_age_seconds`. Misses are looked up single-flight (one
lookup per username however many runs want it at once) through `SharedReads`. Blocked users and
unknown usernames are entries too, so they end as `UnknownUsers` without a lookup per run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from typing import cast

from reconciler.fleet import Fleet, ReadStamp
from reconciler.integrations.gitlab_members.client import GitlabClient
from reconciler.integrations.gitlab_members.models import GitlabUser

log = logging.getLogger(__name__)


def _encode(user: GitlabUser | None, username: str, read_at: float) -> str:
    if user is None:
        return json.dumps({"at": read_at, "username": username, "id": None})
    return json.dumps({"at": read_at, "username": user.username, "id": user.id, "state": user.state})


def _decode(raw: str | None, fresh_after: float) -> tuple[GitlabUser | None] | None:
    """(user or None for "no such user"), or None when absent, unreadable or too old."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
        if float(data["at"]) < fresh_after:
            return None
        if data["id"] is None:
            return (None,)
        return (GitlabUser(id=int(data["id"]), username=str(data["username"]), state=str(data["state"])),)
    except (ValueError, KeyError, TypeError):
        return None


class GitlabDirectory:
    def __init__(self, fleet: Fleet, client: GitlabClient) -> None:
        self.fleet = fleet
        self.client = client
        self.valkey = fleet.client

    def users(self, usernames: Collection[str]) -> dict[str, GitlabUser | None]:
        """Case-folded username -> user (None: GitLab has no such user), looking up only misses.
        Call after `client.current_user()`, so that the key names the token's user."""
        wanted = sorted({u.casefold(): u for u in usernames}.items())
        if not wanted:
            return {}
        key = self.fleet.key(self.client.account(), "users")
        fresh_after = self.fleet.fresh_after
        raw = cast(list[str | None], self.valkey.hmget(key, [folded for folded, _ in wanted]))
        found: dict[str, GitlabUser | None] = {}
        for (folded, name), value in zip(wanted, raw, strict=True):
            entry = _decode(value, fresh_after)
            if entry is None:
                entry = self._look_up(key, folded, name)
            found[folded] = entry[0]
        return found

    def _look_up(self, key: str, folded: str, username: str) -> tuple[GitlabUser | None]:
        """One lookup shared by every run wanting `username` now (single-flight)."""

        def fetch(stamp: ReadStamp) -> ReadStamp:
            # The lookup starts after stamp.started: the entry may look older than it is, never newer.
            user = self.client.find_user(username)
            pipe = self.valkey.pipeline(transaction=False)
            pipe.hset(key, folded, _encode(user, username, stamp.started))
            pipe.expire(key, int(self.fleet.settings.directory_refresh_seconds * 2))
            pipe.execute()  # type: ignore[no-untyped-call]
            return stamp

        self.fleet.reads.fresh(f"{key}:{folded}", self.fleet.fresh_after, (), fetch)
        entry = _decode(cast(str | None, self.valkey.hget(key, folded)), self.fleet.fresh_after)
        if entry is None:  # evicted or overwritten by an older answer meanwhile: ask ourselves
            return (self.client.find_user(username),)
        return entry
