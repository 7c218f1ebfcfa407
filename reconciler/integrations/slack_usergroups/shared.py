"""What every Reconcile on one Slack workspace shares, in Valkey: the user-group snapshot, the
channel list and the user directory. Cost grows with the workspace, not with the fleet.

- User groups and channels are shared reads (single-flight): a run uses one that started after its
  `fresh_after`, so a run asked for explicitly never sees state older than its request. Our own
  writes go to a write-through overlay that wins over any snapshot started before them.
- The directory (e-mail -> user) is swept with `users.list` at most once per
  `directory_refresh_seconds`, resumably (a rate-limited sweep continues where it stopped); in
  between, e-mails not confirmed by the latest sweep are looked up one by one
  (`users.lookupByEmail`). A cached "user exists" never makes a wrong write: a new group's users
  are re-checked first when their entry is older than `directory_recheck_seconds`, and a users
  update Slack refuses (`invalid_users`: deactivated) re-checks the group's users and reports them
  as `UnknownUsers`. Members deactivated later are reported by the next sweep.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from reconciler.errors import TransientError
from reconciler.fleet import Fleet, ReadStamp
from reconciler.integrations.slack_usergroups.client import SlackClient
from reconciler.integrations.slack_usergroups.models import SlackUser, SlackUsergroupState

log = logging.getLogger(__name__)

SENTINEL = "\x00"
"""A field in every stored hash, so a read can tell an expired version from an empty one."""
CHUNK = 1000


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


class SlackWorkspaceCache:
    def __init__(self, fleet: Fleet, client: SlackClient) -> None:
        self.fleet = fleet
        self.client = client
        self.valkey = fleet.client

    def _keys(self) -> None:
        """Keys name the workspace, known only after auth.test: resolved on first use."""
        if hasattr(self, "_groups_key"):
            return
        account = self.client.account()
        self._groups_key = self.fleet.key(account, "usergroups")
        self._writes_key = self.fleet.key(account, "usergroup-writes")
        self._channels_key = self.fleet.key(account, "channels")
        self._users_key = self.fleet.key(account, "users")
        self._user_ids_key = self.fleet.key(account, "user-ids")
        self._sweep_key = self.fleet.key(account, "users-sweep")
        self._sweep_cursor_key = self.fleet.key(account, "users-sweep-cursor")

    def _hmget(self, key: str, fields: Sequence[str]) -> list[str | None]:
        return cast(list[str | None], self.valkey.hmget(key, list(fields)))

    # --- user groups -------------------------------------------------------------------------------

    def usergroups(self, handles: Collection[str], names: Iterable[str]) -> list[SlackUsergroupState]:
        """The managed `handles` in full, plus the groups holding any of `names` (for conflicts)."""
        self._keys()
        for _ in range(3):
            stamp = self.fleet.reads.fresh(
                self._groups_key,
                self.fleet.fresh_after,
                ("groups", "names"),
                self._fetch_groups,
                gather=True,
            )
            groups_part = self.fleet.reads.part(self._groups_key, stamp, "groups")
            names_part = self.fleet.reads.part(self._groups_key, stamp, "names")
            folded = [n.casefold() for n in names]
            pipe = self.valkey.pipeline(transaction=False)
            pipe.hmget(groups_part, [SENTINEL, *handles])
            pipe.hmget(names_part, [SENTINEL, *folded])
            raw_groups, raw_owners = pipe.execute()  # type: ignore[no-untyped-call]
            if raw_groups[0] is None or raw_owners[0] is None:
                continue  # that version expired between reading its stamp and its hashes
            wanted = set(handles)
            owners = sorted({o for o in raw_owners[1:] if o and o not in wanted})
            raw = dict(zip(handles, raw_groups[1:], strict=True))
            if owners:
                raw.update(zip(owners, self._hmget(groups_part, owners), strict=True))
            states = {h: SlackUsergroupState.model_validate_json(v) for h, v in raw.items() if v}
            states.update(self._overlay(stamp, [*handles, *owners]))
            return list(states.values())
        raise RuntimeError("the shared user-group snapshot kept expiring while being read")

    def record_write(self, group: SlackUsergroupState) -> None:
        """Write-through: our own change wins over any snapshot that started before it."""
        self._keys()
        entry = json.dumps({"at": time.time(), "group": group.model_dump(mode="json")})
        pipe = self.valkey.pipeline(transaction=False)
        pipe.hset(self._writes_key, group.handle, entry)
        pipe.expire(self._writes_key, int(self.fleet.settings.directory_refresh_seconds * 2))
        pipe.execute()  # type: ignore[no-untyped-call]

    def _overlay(self, stamp: ReadStamp, handles: list[str]) -> dict[str, SlackUsergroupState]:
        if not handles:
            return {}
        found: dict[str, SlackUsergroupState] = {}
        for handle, raw in zip(handles, self._hmget(self._writes_key, handles), strict=True):
            if not raw:
                continue
            data = json.loads(raw)
            if float(data["at"]) > stamp.started:
                found[handle] = SlackUsergroupState.model_validate(data["group"])
        return found

    def _fetch_groups(self, stamp: ReadStamp) -> ReadStamp:
        groups = self.client.list_all_usergroups()
        pipe = self.valkey.pipeline(transaction=False)
        pipe.hset(
            self.fleet.reads.part(self._groups_key, stamp, "groups"),
            mapping={SENTINEL: "1", **{g.handle: g.model_dump_json() for g in groups}},
        )
        pipe.hset(
            self.fleet.reads.part(self._groups_key, stamp, "names"),
            mapping={SENTINEL: "1", **{g.name.casefold(): g.handle for g in groups}},
        )
        pipe.execute()  # type: ignore[no-untyped-call]
        return stamp

    # --- channels ----------------------------------------------------------------------------------

    def channels(self, names: Collection[str], ids: Collection[str]) -> dict[str, str]:
        """Name -> id of the channels named `names` or having `ids` (unknown ones left out)."""
        self._keys()
        for _ in range(3):
            stamp = self.fleet.reads.fresh(
                self._channels_key,
                self.fleet.fresh_after,
                ("names", "ids"),
                self._fetch_channels,
                gather=True,
            )
            pipe = self.valkey.pipeline(transaction=False)
            pipe.hmget(self.fleet.reads.part(self._channels_key, stamp, "names"), [SENTINEL, *names])
            pipe.hmget(self.fleet.reads.part(self._channels_key, stamp, "ids"), [SENTINEL, *ids])
            by_name, by_id = pipe.execute()  # type: ignore[no-untyped-call]
            if by_name[0] is None or by_id[0] is None:
                continue
            found = {n: i for n, i in zip(names, by_name[1:], strict=True) if i}
            found.update({n: i for i, n in zip(ids, by_id[1:], strict=True) if n})
            return found
        raise RuntimeError("the shared channel list kept expiring while being read")

    def _fetch_channels(self, stamp: ReadStamp) -> ReadStamp:
        channels = self.client.list_channels()
        pipe = self.valkey.pipeline(transaction=False)
        pipe.hset(
            self.fleet.reads.part(self._channels_key, stamp, "names"), mapping={SENTINEL: "1", **channels}
        )
        pipe.hset(
            self.fleet.reads.part(self._channels_key, stamp, "ids"),
            mapping={SENTINEL: "1", **{i: n for n, i in channels.items()}},
        )
        pipe.execute()  # type: ignore[no-untyped-call]
        return stamp

    # --- the directory -----------------------------------------------------------------------------

    def users(self, emails: Collection[str]) -> dict[str, DirectoryEntry]:
        """Directory entries of `emails` (absent: Slack has no active user with that e-mail)."""
        if not emails:
            return {}
        self._keys()
        refresh = self.fleet.settings.directory_refresh_seconds
        sweep = self.fleet.reads.fresh(self._sweep_key, time.time() - refresh, (), self._sweep)
        wanted = sorted(set(emails))
        found: dict[str, DirectoryEntry] = {}
        misses: list[str] = []
        for email, raw in zip(wanted, self._hmget(self._users_key, wanted), strict=True):
            entry = _decode_user(email, raw)
            # Not seen by the latest sweep (nor looked up since): gone, or new since the sweep.
            if entry is None or entry.read_at < int(sweep.started):
                misses.append(email)
            else:
                found[email] = entry
        found.update(self.look_up(misses))
        return found

    def look_up(self, emails: Iterable[str]) -> dict[str, DirectoryEntry]:
        """Ask Slack now (Tier 3, one call per e-mail) and keep the answers."""
        self._keys()
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
        self._keys()
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
