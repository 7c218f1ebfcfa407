"""A Slack workspace's user directory (e-mail -> user), shared in Valkey by every Reconcile on it.

It is swept with `users.list` at most once per `directory_refresh_seconds`, resumably (a
rate-limited sweep continues where it stopped); in between, e-mails not confirmed by the latest
sweep are looked up one by one (`users.lookupByEmail`). A cached "user exists" never makes a wrong
write: a new group's users are re-checked first when their entry is older than
`directory_recheck_seconds`, and a users update Slack refuses (`invalid_users`: deactivated)
re-checks the group's users and reports them as `UnknownUsers`. Members deactivated later are
reported by the next sweep.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from reconciler.errors import TransientError
from reconciler.fleet import Fleet, ReadStamp
from reconciler.integrations.slack_usergroups.client import SlackClient
from reconciler.integrations.slack_usergroups.models import SlackUser

log = logging.getLogger(__name__)

CHUNK = 1000
SWEEP = "slack_directory_sweep"
"""The sweep's name in reconciler_shared_reads_total."""


@dataclass(frozen=True)
class DirectoryEntry:
    user: SlackUser
    read_at: float


def _encode_user(user: SlackUser, read_at: float) -> str:
    """Whole seconds, rounded down: an entry may look older than it is, never newer."""
    return f"{user.id} {'d' if user.deleted else '-'} {int(read_at)}"


def _decode_user(email: str, raw: str | None) -> DirectoryEntry | None:
    if not raw:
        return None
    parts = raw.split(" ")
    if len(parts) != 3:
        return None
    try:
        return DirectoryEntry(SlackUser(id=parts[0], email=email, deleted=parts[1] == "d"), float(parts[2]))
    except ValueError:
        return None


class SlackDirectory:
    """The directory of the workspace `account` (SlackClient.account: known after auth.test)."""

    def __init__(self, fleet: Fleet, client: SlackClient, account: str) -> None:
        self.fleet = fleet
        self.client = client
        self.valkey = fleet.client
        self._users_key = fleet.key(account, "users")
        self._user_ids_key = fleet.key(account, "user-ids")
        self._sweep_key = fleet.key(account, "users-sweep")
        self._sweep_cursor_key = fleet.key(account, "users-sweep-cursor")

    def _hmget(self, key: str, fields: Sequence[str]) -> list[str | None]:
        return cast(list[str | None], self.valkey.hmget(key, list(fields)))

    def entries_commands(self, pipe: Any, wanted: list[str]) -> None:
        """The directory's first read (`users`): the sweep's stamp, then the entries of `wanted`."""
        pipe.get(self._sweep_key)
        pipe.hmget(self._users_key, wanted)

    def users(
        self, emails: Collection[str], *, first: tuple[Any, Any] | None = None
    ) -> dict[str, DirectoryEntry]:
        """Directory entries of `emails` (absent: Slack has no active user with that e-mail).
        `first`: the sweep's stamp and the entries, when already read (`entries_commands`)."""
        if not emails:
            return {}
        fresh_after = time.time() - self.fleet.settings.directory_refresh_seconds
        wanted = sorted(set(emails))
        # The sweep's stamp and the entries in one round trip; when no sweep is fresh enough, the
        # shared read first (wait or sweep), then the entries again.
        if first is None:
            pipe = self.valkey.pipeline(transaction=False)
            self.entries_commands(pipe, wanted)
            first = pipe.execute()  # type: ignore[no-untyped-call]
        raw_stamp, entries = first
        sweep = ReadStamp.from_json(raw_stamp)
        if sweep is None or sweep.started < fresh_after:
            sweep = self.fleet.reads.fresh(self._sweep_key, fresh_after, (), self._sweep, read=SWEEP)
            entries = self._hmget(self._users_key, wanted)
        else:
            self.fleet.reads.used(SWEEP, sweep)
        found: dict[str, DirectoryEntry] = {}
        misses: list[str] = []
        for email, raw in zip(wanted, entries, strict=True):
            entry = _decode_user(email, raw)
            # Not seen by the latest sweep (nor looked up since): gone, or new since the sweep.
            if entry is None or entry.read_at < int(sweep.started):
                misses.append(email)
            else:
                found[email] = entry
        found.update(self.look_up(misses))
        return found

    def sweep_if_due(self, raw_stamp: Any) -> None:
        """Sweep now when the sweep `raw_stamp` (as `entries_commands` read it) is due and no other
        worker is sweeping: a run then makes the sweep while another fetches its other shared read,
        instead of waiting for that one first (both at once on a cold start: one call's time less)."""
        fresh_after = time.time() - self.fleet.settings.directory_refresh_seconds
        sweep = ReadStamp.from_json(raw_stamp)
        if sweep is None or sweep.started < fresh_after:
            self.fleet.reads.lead_if_free(self._sweep_key, fresh_after, (), self._sweep, read=SWEEP)

    def look_up(self, emails: Iterable[str]) -> dict[str, DirectoryEntry]:
        """Ask Slack now (Tier 3, one call per e-mail) and keep the answers."""
        found: dict[str, DirectoryEntry] = {}
        for email in emails:
            user = self.client.lookup_user(email)
            if user is None:
                self.valkey.hdel(self._users_key, email)
                continue
            now = time.time()
            self.valkey.hset(self._users_key, email, _encode_user(user, now))
            self.valkey.hset(self._user_ids_key, user.id, email)
            found[email] = DirectoryEntry(user, now)
        return found

    def emails_of(self, user_ids: Collection[str]) -> dict[str, str]:
        """Id -> e-mail for display (a plan names removed members by e-mail)."""
        ids = sorted(set(user_ids))
        if not ids:
            return {}
        raw = self._hmget(self._user_ids_key, ids)
        return {i: str(e) for i, e in zip(ids, raw, strict=True) if e}

    def _sweep(self, stamp: ReadStamp) -> ReadStamp:
        """Every user, page by page; resumes a sweep that a rate limit stopped (cursor kept)."""
        saved = self.valkey.hgetall(self._sweep_cursor_key)
        cursor: str | None = None
        if isinstance(saved, dict) and saved.get("cursor"):
            cursor = str(saved["cursor"])
            stamp = ReadStamp(stamp.version, float(saved.get("started", stamp.started)))
            log.info("resuming the Slack directory sweep of %s", self._users_key)
        ttl = int(self.fleet.settings.directory_refresh_seconds * 2)
        max_pages = self.fleet.settings.max_pages
        for _ in range(max_pages):
            users, cursor = self.client.list_users_page(cursor)
            read_at = max(time.time(), stamp.started)
            pipe = self.valkey.pipeline(transaction=False)
            for start in range(0, len(users), CHUNK):
                chunk = [u for u in users[start : start + CHUNK] if u.email]
                if chunk:
                    pipe.hset(
                        self._users_key, mapping={u.email: _encode_user(u, read_at) for u in chunk if u.email}
                    )
                    pipe.hset(self._user_ids_key, mapping={u.id: u.email for u in chunk if u.email})
            pipe.expire(self._users_key, ttl)
            pipe.expire(self._user_ids_key, ttl)
            if cursor:
                pipe.hset(self._sweep_cursor_key, mapping={"cursor": cursor, "started": str(stamp.started)})
                pipe.expire(self._sweep_cursor_key, ttl)
            else:
                pipe.delete(self._sweep_cursor_key)
            pipe.execute()  # type: ignore[no-untyped-call]
            if not cursor:
                return stamp
        raise TransientError("BadResponse", f"Slack users.list kept paginating past {max_pages} pages")
