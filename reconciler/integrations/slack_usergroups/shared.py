"""What every Reconcile on one Slack workspace shares, in Valkey: the user-group snapshot, the
channel list and the user directory. Cost grows with the workspace, not with the fleet.

- User groups and channels are shared reads (single-flight): a run uses one that started after its
  `fresh_after`, so a run asked for explicitly never sees state older than its request. Our own
  writes go to a write-through overlay that wins over any snapshot started before them.
- The directory (e-mail -> user) is swept with `users.list` at most once per
  `directory_refresh_seconds`; in between, e-mails are looked up one by one (directory.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable
from typing import Any

import valkey.exceptions

from reconciler.fleet import Fleet, ReadStamp
from reconciler.fleet.riders import Rider
from reconciler.integrations.slack_usergroups.client import SlackClient
from reconciler.integrations.slack_usergroups.directory import DirectoryEntry, SlackDirectory
from reconciler.integrations.slack_usergroups.models import SlackUsergroupState

SENTINEL = "\x00"
"""A field in every stored hash, so a read can tell an expired version from an empty one."""

# One round trip for the common case of `usergroups`: the current snapshot's stamp (unless ARGV[1]
# names the version to read), the managed groups, the groups holding the names, and the overlay.
# KEYS: stamp key, overlay key. ARGV: version or '', #groups fields, #names fields, the groups
# fields (SENTINEL first), the names fields (SENTINEL first).
_READ_GROUPS = """
local version = ARGV[1]
local stamp = false
if version == '' then
  stamp = redis.call('GET', KEYS[1])
  if not stamp then return {false} end
  local ok, data = pcall(cjson.decode, stamp)
  if not ok or type(data) ~= 'table' or data['version'] == nil then return {false} end
  version = tostring(data['version'])
end
local ng, nn = tonumber(ARGV[2]), tonumber(ARGV[3])
local base = KEYS[1] .. ':' .. version .. ':'
local groups = redis.call('HMGET', base .. 'groups', unpack(ARGV, 4, 3 + ng))
local names = redis.call('HMGET', base .. 'names', unpack(ARGV, 4 + ng, 3 + ng + nn))
local writes = {}
if ng > 1 then writes = redis.call('HMGET', KEYS[2], unpack(ARGV, 5, 3 + ng)) end
return {stamp, groups, names, writes}
"""


_PlanAsk = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]
"""What a plan reads first: its user-group handles, the names it needs, its users' e-mails."""


class SlackWorkspaceCache:
    def __init__(self, fleet: Fleet, client: SlackClient) -> None:
        self.fleet = fleet
        self.client = client
        self.valkey = fleet.client
        self._read_groups_script = fleet.client.register_script(_READ_GROUPS)
        self._first_rider: Rider | None = None
        self._first_reads: tuple[_PlanAsk, list[Any]] | None = None
        """The plan's first reads, when they rode with the claims' trip (`queue_plan_reads`)."""

    def _keys(self) -> None:
        """Keys name the workspace, known only after auth.test: resolved on first use."""
        if hasattr(self, "_groups_key"):
            return
        account = self.client.account()
        self._groups_key = self.fleet.key(account, "usergroups")
        self._writes_key = self.fleet.key(account, "usergroup-writes")
        self._channels_key = self.fleet.key(account, "channels")
        self.directory = SlackDirectory(self.fleet, self.client, account)

    # --- user groups -------------------------------------------------------------------------------

    def queue_plan_reads(
        self, handles: Collection[str], names: Iterable[str], emails: Collection[str]
    ) -> None:
        """Queue `read_for_plan`'s first reads to ride with the run's next round trip (its claims'),
        so that planning needs no trip of its own when they are fresh enough."""
        self._keys()
        ask = self._plan_ask(handles, names, emails)

        def on_reply(replies: list[Any]) -> None:
            self._first_reads = (ask, replies)

        self._first_rider = self.fleet.riders.add(
            "the plan's first reads",
            lambda pipe: self._plan_commands(pipe, ask),
            3 if ask[2] else 1,
            on_reply,
        )

    def read_for_plan(
        self, handles: Collection[str], names: Iterable[str], emails: Collection[str]
    ) -> tuple[list[SlackUsergroupState], dict[str, DirectoryEntry]]:
        """`usergroups(handles, names)` and `users(emails)` with their first reads in one round trip
        (the common case: both fresh enough, nothing else to ask), none when they rode with the
        claims' trip (`queue_plan_reads`, for the same handles, names and e-mails)."""
        self._keys()
        ask = self._plan_ask(handles, names, emails)
        rider, self._first_rider = self._first_rider, None
        if rider is not None:
            self.fleet.riders.cancel(rider)  # never boarded (no claims trip): read now
        first, self._first_reads = self._first_reads, None
        replies = first[1] if first is not None and first[0] == ask else None
        if replies is None:
            pipe = self.valkey.pipeline(transaction=False)
            self._plan_commands(pipe, ask)
            replies = pipe.execute(raise_on_error=False)  # type: ignore[no-untyped-call]
        for reply in replies:
            if isinstance(reply, Exception) and not isinstance(reply, valkey.exceptions.NoScriptError):
                raise reply
        wanted, names, emails = ask
        first_groups = None if isinstance(replies[0], Exception) else replies[0]  # NOSCRIPT: ask again
        first_users = (replies[1], replies[2]) if emails else None
        if first_users is not None:
            self.directory.sweep_if_due(first_users[0])
        return (
            self.usergroups(wanted, names, first=first_groups),
            self.users(emails, first=first_users),
        )

    @staticmethod
    def _plan_ask(handles: Collection[str], names: Iterable[str], emails: Collection[str]) -> _PlanAsk:
        return tuple(dict.fromkeys(handles)), tuple(names), tuple(sorted(set(emails)))

    def _plan_commands(self, pipe: Any, ask: _PlanAsk) -> None:
        """The plan's first reads: the snapshot script (by its hash: a pipeline would first ask
        SCRIPT EXISTS, a trip of its own), then the sweep's stamp and the entries."""
        wanted, names, emails = ask
        keys, args = self._read_groups_call(None, list(wanted), [n.casefold() for n in names])
        pipe.evalsha(self._read_groups_script.sha, len(keys), *keys, *args)
        if emails:
            self.directory.entries_commands(pipe, list(emails))

    def usergroups(
        self, handles: Collection[str], names: Iterable[str], *, first: Any = None
    ) -> list[SlackUsergroupState]:
        """The managed `handles` in full, plus the groups holding any of `names` (for conflicts).
        One round trip when the current snapshot is fresh enough (a script reads its stamp, parts
        and the overlay); else the shared read first (`fresh`: wait or fetch), then that script.
        `first`: that script's reply, when already asked (`read_for_plan`)."""
        self._keys()
        wanted = list(dict.fromkeys(handles))
        folded = [n.casefold() for n in names]
        for attempt in range(3):
            stamp: ReadStamp | None = None
            if attempt == 0:
                stamp, read = self._read_groups(None, wanted, folded, first)
                if stamp is not None and stamp.started < self.fleet.fresh_after:
                    stamp = None
            found = stamp is not None  # fresh enough as it was: counted here, not by `fresh`
            if stamp is None:
                stamp = self.fleet.reads.fresh(
                    self._groups_key,
                    self.fleet.fresh_after,
                    ("groups", "names"),
                    self._fetch_groups,
                    gather=True,
                    read="slack_usergroups",
                )
                _, read = self._read_groups(stamp, wanted, folded)
            raw_groups, raw_owners, raw_writes = read
            if raw_groups[0] is None or raw_owners[0] is None:
                continue  # that version expired between reading its stamp and its hashes
            owners = sorted({o for o in raw_owners[1:] if o and o not in set(wanted)})
            raw = dict(zip(wanted, raw_groups[1:], strict=True))
            writes = dict(zip(wanted, raw_writes, strict=True))
            if owners:
                groups_part = self.fleet.reads.part(self._groups_key, stamp, "groups")
                pipe = self.valkey.pipeline(transaction=False)
                pipe.hmget(groups_part, owners)
                pipe.hmget(self._writes_key, owners)
                owner_groups, owner_writes = pipe.execute()  # type: ignore[no-untyped-call]
                raw.update(zip(owners, owner_groups, strict=True))
                writes.update(zip(owners, owner_writes, strict=True))
            states = {h: SlackUsergroupState.model_validate_json(v) for h, v in raw.items() if v}
            states.update(self._overlay(stamp, writes))
            if found:
                self.fleet.reads.used("slack_usergroups", stamp)
            return list(states.values())
        raise RuntimeError("the shared user-group snapshot kept expiring while being read")

    def _read_groups_call(
        self, stamp: ReadStamp | None, handles: list[str], folded: list[str]
    ) -> tuple[list[str], list[str]]:
        """`_READ_GROUPS`'s keys and arguments."""
        keys = [self._groups_key, self._writes_key]
        version = stamp.version if stamp is not None else ""
        return keys, [
            version,
            str(len(handles) + 1),
            str(len(folded) + 1),
            SENTINEL,
            *handles,
            SENTINEL,
            *folded,
        ]

    def _read_groups(
        self, stamp: ReadStamp | None, handles: list[str], folded: list[str], reply: Any = None
    ) -> tuple[ReadStamp | None, tuple[list[str | None], list[str | None], list[str | None]]]:
        """`_READ_GROUPS`: the read `stamp` (else the current one, returned) in one round trip
        (none when `reply`, its answer, is given)."""
        if reply is None:
            keys, args = self._read_groups_call(stamp, handles, folded)
            reply = self._read_groups_script(keys=keys, args=args)
        if stamp is None:
            stamp = ReadStamp.from_json(reply[0])
            if stamp is None:
                return None, ([None], [None], [])
        return stamp, (reply[1], reply[2], list(reply[3]) + [None] * (len(handles) - len(reply[3])))

    def record_write(self, group: SlackUsergroupState) -> None:
        """Write-through: our own change wins over any snapshot that started before it. Queued to
        ride with the run's next round trip (its next budget token), else sent by `send_writes`
        when the apply ends: either way before the run's final save releases its lock, so this
        Reconcile's next run reads it (fleet/riders.py)."""
        self._keys()
        entry = json.dumps({"at": time.time(), "group": group.model_dump(mode="json")})
        key, ttl = self._writes_key, int(self.fleet.settings.directory_refresh_seconds * 2)

        def commands(pipe: Any) -> None:
            pipe.hset(key, group.handle, entry)
            pipe.expire(key, ttl)

        self.fleet.riders.add(f"the write-through of user group {group.handle}", commands, 2)

    def send_writes(self) -> None:
        """Send the write-throughs still queued when the apply ends (fleet/riders.py)."""
        self.fleet.riders.send_unless_carried()

    @staticmethod
    def _overlay(stamp: ReadStamp, writes: dict[str, str | None]) -> dict[str, SlackUsergroupState]:
        """Our own writes (handle -> stored entry) made after the snapshot `stamp` started."""
        found: dict[str, SlackUsergroupState] = {}
        for handle, raw in writes.items():
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
                read="slack_channels",
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

    # --- the directory (directory.py) -------------------------------------------------------------

    def users(
        self, emails: Collection[str], *, first: tuple[Any, Any] | None = None
    ) -> dict[str, DirectoryEntry]:
        """Directory entries of `emails` (absent: Slack has no active user with that e-mail).
        `first`: the sweep's stamp and the entries, when already read (`read_for_plan`)."""
        if not emails:
            return {}
        self._keys()
        return self.directory.users(emails, first=first)

    def look_up(self, emails: Iterable[str]) -> dict[str, DirectoryEntry]:
        """Ask Slack now (Tier 3, one call per e-mail) and keep the answers."""
        self._keys()
        return self.directory.look_up(emails)

    def emails_of(self, user_ids: Collection[str]) -> dict[str, str]:
        """Id -> e-mail for display (a plan names removed members by e-mail)."""
        if not user_ids:
            return {}
        self._keys()
        return self.directory.emails_of(user_ids)
