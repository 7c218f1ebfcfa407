"""What every Reconcile on one GitLab instance shares, in Valkey, keyed by the account the rate
budget uses (instance + token user), never by Reconcile: the token's own user, the direct-member
listing of each group and project, and the user directory (username -> id and state).

Every read follows one freshness rule: a run uses a read that *started* at or after its
`fresh_after` (the time of its request for a run asked for explicitly, else now minus
`snapshot_max_age_seconds`), so a run asked for explicitly never plans on state older than its
request, and may share a read started after it. Reads are single-flight (`SharedReads`): runs
wanting one at once share one GitLab call. The token's user and the username lookups, which many
Reconciles want, gather: their read starts `shared_read_coalesce_seconds` after the request, so
that a fleet asked for at once shares them (a group's listing is wanted by its own runs only).

- Member listings: our own adds, level changes and removals are written through to an overlay
  that wins over any listing started before them, so a stale listing never hides our own change.
  A write-through rides with the run's next Valkey round trip (fleet/riders.py), at the latest
  when the apply ends or with the run's final save: before this Reconcile's next run can start.
  A write that fails (or whose outcome is unknown) drops the listing at once: the next run reads
  again (whether a write-through queued before it lands earlier or later does not matter, as each
  entry carries the time of its write, not of its trip: see `forget`).
- The directory: only usernames a run is about to add are looked up (the listings name everyone
  else). Blocked users and unknown usernames are entries too, so they end as `UnknownUsers`
  without a lookup per run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection
from typing import Any, cast

from pydantic import TypeAdapter

from reconciler.fleet import Fleet, ReadStamp, metrics
from reconciler.integrations.gitlab_members.client import GitlabClient
from reconciler.integrations.gitlab_members.models import GitlabMemberState, GitlabUser, SourceKind

log = logging.getLogger(__name__)

SENTINEL = "\x00"
"""A field in every stored hash, so a read can tell an expired version from an empty one."""
_MEMBERS = TypeAdapter(list[GitlabMemberState])
NOT_FOUND = "null"
"""Stored for a group or project GitLab does not show, or a token whose scopes it does not describe."""
USER_LOOKUP = "gitlab_user_lookup"
"""The username lookups' name in reconciler_shared_reads_total."""


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


class GitlabInstanceCache:
    def __init__(self, fleet: Fleet, client: GitlabClient) -> None:
        self.fleet = fleet
        self.client = client
        self.valkey = fleet.client

    @property
    def _ttl(self) -> int:
        return int(self.fleet.settings.directory_refresh_seconds * 2)

    # --- the token's own user ----------------------------------------------------------------------

    def own_user(self) -> GitlabUser:
        """`GET /user`, shared by the runs of this token (keyed by the token's hash, so that
        nothing of another token is ever used)."""
        key = self.fleet.key(self.client.token_account(), "own-user")

        def fetch(stamp: ReadStamp) -> ReadStamp:
            user = self.client.current_user()
            self.valkey.hset(
                self.fleet.reads.part(key, stamp, "user"), mapping={SENTINEL: user.model_dump_json()}
            )
            return stamp

        for _ in range(3):
            stamp = self.fleet.reads.fresh(
                key, self.fleet.fresh_after, ("user",), fetch, gather=True, read="gitlab_own_user"
            )
            raw = self.valkey.hget(self.fleet.reads.part(key, stamp, "user"), SENTINEL)
            if raw:
                user = GitlabUser.model_validate_json(cast(str, raw))
                self.client.adopt_user(user)
                return user
        return self.client.current_user()

    def token_scopes(self) -> frozenset[str] | None:
        """The token's scopes (`GET /personal_access_tokens/self`), shared by the runs of this token
        for `directory_refresh_seconds`: an access token's scopes are fixed when it is created."""
        key = self.fleet.key(self.client.token_account(), "scopes")
        fresh_after = time.time() - self.fleet.settings.directory_refresh_seconds

        def fetch(stamp: ReadStamp) -> ReadStamp:
            scopes = self.client.token_scopes()
            value = NOT_FOUND if scopes is None else json.dumps(sorted(scopes))
            self.valkey.hset(self.fleet.reads.part(key, stamp, "scopes"), mapping={SENTINEL: value})
            return stamp

        for _ in range(3):
            stamp = self.fleet.reads.fresh(key, fresh_after, ("scopes",), fetch, read="gitlab_token_scopes")
            raw = cast(str | None, self.valkey.hget(self.fleet.reads.part(key, stamp, "scopes"), SENTINEL))
            if raw == NOT_FOUND:
                return None
            if raw:
                return frozenset(str(scope) for scope in json.loads(raw))
        return self.client.token_scopes()

    # --- member listings ---------------------------------------------------------------------------

    def _listing_key(self, kind: SourceKind, path: str) -> str:
        return self.fleet.key(self.client.account(), "members", kind, path.casefold())

    def _writes_key(self, kind: SourceKind, path: str) -> str:
        return self.fleet.key(self.client.account(), "member-writes", kind, path.casefold())

    def members(self, kind: SourceKind, path: str) -> list[GitlabMemberState] | None:
        """Direct members of a group or project (None: GitLab shows no such one), from a listing
        fresh enough for this run, with our own writes since that listing started on top.
        Call after `own_user()`, so that the keys name the token's user."""
        key = self._listing_key(kind, path)

        def fetch(stamp: ReadStamp) -> ReadStamp:
            listed = self.client.list_members(kind, path)
            self.valkey.hset(
                self.fleet.reads.part(key, stamp, "members"),
                mapping={SENTINEL: NOT_FOUND if listed is None else _MEMBERS.dump_json(listed).decode()},
            )
            return stamp

        for _ in range(3):
            stamp = self.fleet.reads.fresh(
                key, self.fleet.fresh_after, ("members",), fetch, read="gitlab_members"
            )
            pipe = self.valkey.pipeline(transaction=False)
            pipe.hget(self.fleet.reads.part(key, stamp, "members"), SENTINEL)
            pipe.hgetall(self._writes_key(kind, path))
            raw, writes = pipe.execute()  # type: ignore[no-untyped-call]
            if not raw:
                continue  # that version expired between reading its stamp and its hash
            if raw == NOT_FOUND:
                return None
            listed = _MEMBERS.validate_json(raw)
            return _overlay(listed, cast(dict[str, str], writes), stamp.started)
        return self.client.list_members(kind, path)

    def record_write(
        self, kind: SourceKind, path: str, user_id: int, member: GitlabMemberState | None
    ) -> None:
        """Write-through of our own change (None: removed): it wins over any listing started before
        the write (its time is taken now, not when it lands). Queued to ride with the run's next
        round trip (its next GitLab call's budget token), else sent by `send_writes` when the apply
        ends or carried by the run's final save: either way before the run's lock is released, so
        this Reconcile's next run reads it (fleet/riders.py)."""
        key, ttl = self._writes_key(kind, path), self._ttl
        entry = json.dumps({"at": time.time(), "member": member.model_dump(mode="json") if member else None})

        def commands(pipe: Any) -> None:
            pipe.hset(key, str(user_id), entry)
            pipe.expire(key, ttl)

        self.fleet.riders.add(f"the write-through of member {user_id} of {kind} {path}", commands, 2)

    def send_writes(self) -> None:
        """Send the write-throughs still queued when the apply ends (fleet/riders.py)."""
        self.fleet.riders.send_unless_carried()

    def forget(self, kind: SourceKind, path: str) -> None:
        """A write failed or its outcome is unknown: the next run lists this one again. Sent at once,
        not queued (a full Valkey still takes a DEL, and a dropped rider would keep a listing that
        may be wrong). A write-through of this listing still queued (the run's client lost the
        budget's trips) may land before or after it: it goes to the overlay, not the listing, and
        any listing read after this DEL started after that write, so GitLab shows the write in it
        and the entry, older than the listing, never wins over it."""
        self.valkey.delete(self._listing_key(kind, path))

    # --- the user directory ------------------------------------------------------------------------

    def users(self, usernames: Collection[str]) -> dict[str, GitlabUser | None]:
        """Case-folded username -> user (None: GitLab has no such user), looking up only misses.
        Call after `own_user()`, so that the key names the token's user."""
        wanted = sorted({u.casefold(): u for u in usernames}.items())
        if not wanted:
            return {}
        key = self.fleet.key(self.client.account(), "users")
        fresh_after = self.fleet.fresh_after
        raw = cast(list[str | None], self.valkey.hmget(key, [folded for folded, _ in wanted]))
        found: dict[str, GitlabUser | None] = {}
        misses = 0
        for (folded, name), value in zip(wanted, raw, strict=True):
            entry = _decode(value, fresh_after)
            if entry is None:
                misses += 1
                entry = self._look_up(key, folded, name)
            found[folded] = entry[0]
        # Fresh entries are lookups shared without asking; `_look_up` counts its own.
        metrics.read_shared(USER_LOOKUP, len(wanted) - misses)
        return found

    def _look_up(self, key: str, folded: str, username: str) -> tuple[GitlabUser | None]:
        """One lookup shared by every run wanting `username` now (single-flight)."""

        def fetch(stamp: ReadStamp) -> ReadStamp:
            # The lookup starts after stamp.started: the entry may look older than it is, never newer.
            user = self.client.find_user(username)
            pipe = self.valkey.pipeline(transaction=False)
            pipe.hset(key, folded, _encode(user, username, stamp.started))
            pipe.expire(key, self._ttl)
            pipe.execute()  # type: ignore[no-untyped-call]
            return stamp

        self.fleet.reads.fresh(
            f"{key}:{folded}", self.fleet.fresh_after, (), fetch, gather=True, read=USER_LOOKUP
        )
        entry = _decode(cast(str | None, self.valkey.hget(key, folded)), self.fleet.fresh_after)
        if entry is None:  # evicted or overwritten by an older answer meanwhile: ask ourselves
            return (self.client.find_user(username),)
        return entry


def _overlay(
    listed: list[GitlabMemberState], writes: dict[str, str], started: float
) -> list[GitlabMemberState]:
    """The listing with our own writes made after it started: changed in place, added at the end,
    removed ones left out."""
    newer: dict[int, GitlabMemberState | None] = {}
    for user_id, raw in writes.items():
        try:
            data = json.loads(raw)
            if float(data["at"]) > started:
                member = data["member"]
                newer[int(user_id)] = GitlabMemberState.model_validate(member) if member else None
        except (ValueError, KeyError, TypeError):
            continue
    if not newer:
        return listed
    merged = [newer.get(m.id, m) for m in listed]
    members = [m for m in merged if m is not None]
    seen = {m.id for m in listed}
    members += [m for uid, m in newer.items() if m is not None and uid not in seen]
    return members
