"""Single-flight reads shared through Valkey: one worker fetches, the others wait for its result.

A read is stored as versioned hashes (`{key}:{version}:{part}`) plus a stamp under `{key}` saying
which version is current and when its fetch *started*. A run asks for a read that started at or
after its `fresh_after` (the time it was requested): it uses the current one if that is fresh
enough, else waits for the fetch in flight, else fetches itself while holding `{key}:lock`, so
that runs asking at once share one fetch. Waiting is bounded: a leader that is late or died is
replaced by the waiter after `wait_seconds`, and no wait outlasts the run's own deadline.

Gathering (DataLoader-style batching), for reads asked with `gather=True`: a fetch for a run asked
for explicitly starts no earlier than `gather_seconds` after that run's request. Runs requested in
that window (a GitOps sync or a script annotating the whole fleet; requests reach the operator
spread over a few hundred ms) then share one read, instead of one read per arrival during the
previous fetch. A read's stamp is taken when its fetch really starts, after the pause, so every run
it serves was requested before it. A run whose request is already older than the window (queued
behind busy workers, an interval run) does not pause at all. Nor does a leader wait out the window
once every worker of this process (`workers`, the operator's pool) is inside a shared read (this
one, or another that a worker fetches with `lead_if_free`): nobody else here can join before the
read starts, so pausing would only delay them all. Waiters of this process are woken when the read
lands, not at the leader's planned start.

Each read is counted (fleet/metrics.py) under the kind its caller names (`read`): `fetched` when
this process fetches it, `shared` when a run uses one it did not fetch itself.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import valkey
import valkey.exceptions

from reconciler import deadline as run_deadline
from reconciler.errors import CacheUnavailable
from reconciler.fleet import metrics

log = logging.getLogger(__name__)

POLL_SECONDS = 0.01
"""How often a run waiting for another worker's read checks for it (a GET on Valkey)."""
OLD_VERSION_GRACE_SECONDS = 30
"""A replaced version stays readable this long, for runs that read its stamp just before."""

_ERRORS = (valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError, OSError)

# KEYS: stamp key. ARGV: new stamp JSON, its start time, ttl, grace, part names...
_INSTALL = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local old = cjson.decode(cur)
  if tonumber(old['started']) >= tonumber(ARGV[2]) then return 0 end
  for i = 5, #ARGV do
    redis.call('EXPIRE', KEYS[1] .. ':' .. old['version'] .. ':' .. ARGV[i], ARGV[4])
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""

# KEYS: stamp key, lock. ARGV: fresh_after, lock value, lock ms. Atomically: the current read if
# it started at or after fresh_after ({1, stamp}), else the lock if free ({2}), else its holder ({0, holder}).
_FRESH_OR_LOCK = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, data = pcall(cjson.decode, cur)
  if ok and type(data) == 'table' and data['version'] ~= nil and tonumber(data['started']) ~= nil
     and tonumber(data['started']) >= tonumber(ARGV[1]) then
    return {1, cur}
  end
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {2} end
return {0, redis.call('GET', KEYS[2])}
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _start_of(holder: object) -> float:
    """When the lock holder's fetch starts (its lock value is "token start"); 0 if unknown."""
    raw = _text(holder)
    try:
        return float(raw.split(" ")[1])
    except (IndexError, ValueError):
        return 0.0


@dataclass(frozen=True)
class ReadStamp:
    """One stored read: its version (names its hashes) and when its fetch started (epoch seconds)."""

    version: str
    started: float

    def to_json(self) -> str:
        return json.dumps({"version": self.version, "started": self.started})

    @classmethod
    def from_json(cls, raw: str | None) -> ReadStamp | None:
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls(str(data["version"]), float(data["started"]))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass
class _Asking:
    """The threads of this process inside `fresh` for one key, and how many reads of it landed."""

    threads: int = 0
    landed: int = 0
    leading: str = ""
    """The lock value of this process's leader fetching the read now ("" if none here)."""
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_for_landing(self, seen: int, timeout: float) -> None:
        """Sleep up to `timeout`, less if a read lands after `seen` reads had."""
        with self.changed:
            self.changed.wait_for(lambda: self.landed != seen, timeout=timeout)


class _LocalAsks:
    """Per (Valkey client, key): which threads of this process are asking for that read now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._asks: dict[tuple[int, str], _Asking] = {}
        self._inside: dict[int, int] = {}
        """Per Valkey client: threads of this process inside any shared read."""

    def inside(self, client: valkey.Valkey) -> int:
        return self._inside.get(id(client), 0)

    @contextmanager
    def asking(self, client: valkey.Valkey, key: str) -> Iterator[_Asking]:
        slot_key = (id(client), key)
        with self._lock:
            slot = self._asks.setdefault(slot_key, _Asking())
            slot.threads += 1
            self._inside[id(client)] = self._inside.get(id(client), 0) + 1
            others = [s for k, s in self._asks.items() if k[0] == id(client)]
        for other in others:  # a gathering leader of any key counts this thread (`_pause_until`)
            with other.changed:
                other.changed.notify_all()
        try:
            yield slot
        finally:
            with self._lock:
                slot.threads -= 1
                self._inside[id(client)] -= 1
                if slot.threads == 0:
                    del self._asks[slot_key]


_LOCAL = _LocalAsks()


class SharedReads:
    def __init__(
        self,
        client: valkey.Valkey,
        *,
        wait_seconds: float,
        ttl_seconds: int,
        gather_seconds: float = 0.0,
        workers: int | None = None,
    ) -> None:
        """`workers`: the size of this process's worker pool (None: unknown; a gathering leader then
        always waits out its window)."""
        self.client = client
        self._wait = wait_seconds
        self._gather = gather_seconds
        self._workers = workers
        self._ttl = ttl_seconds
        self._install = client.register_script(_INSTALL)
        self._release = client.register_script(_RELEASE)
        self._fresh_or_lock = client.register_script(_FRESH_OR_LOCK)
        self.fetched = 0
        """Fetches this instance made itself (the rest were shared)."""
        self._mine: set[str] = set()
        """Versions this instance fetched: a run using one again did not share it."""
        self.gathered = 0.0
        """Seconds this instance paused before its fetches, gathering runs to share them."""

    def part(self, key: str, stamp: ReadStamp, name: str) -> str:
        """The Valkey key of one part (a hash) of the read `stamp`."""
        return f"{key}:{stamp.version}:{name}"

    def current(self, key: str) -> ReadStamp | None:
        try:
            return ReadStamp.from_json(self.client.get(key))  # type: ignore[arg-type]
        except _ERRORS as exc:
            raise CacheUnavailable(f"Valkey is unreachable (shared reads): {exc}") from None

    def used(self, read: str, stamp: ReadStamp) -> None:
        """Count a run's use of `stamp` (a read of kind `read`) that it found without `fresh`:
        shared, unless this instance fetched it."""
        if stamp.version not in self._mine:
            metrics.read_shared(read)

    def fresh(
        self,
        key: str,
        fresh_after: float,
        parts: Sequence[str],
        fetch: Callable[[ReadStamp], ReadStamp],
        *,
        gather: bool = False,
        read: str = metrics.OTHER,
    ) -> ReadStamp:
        """A read of `key` that started at or after `fresh_after`; `fetch(stamp)` stores a new one's
        parts (hashes at `part(key, stamp, name)`) when no such read exists or is in flight, and
        returns the stamp to install (the same, or an earlier start when it resumed a read). With
        `gather`, a fetch starts no earlier than `gather_seconds` after `fresh_after` (see above).
        `read`: the kind of read, for the metrics (a bounded name, never the account)."""
        run = run_deadline.current()
        deadline = time.monotonic() + min(self._wait, run.remaining())
        lock = f"{key}:lock"
        with _LOCAL.asking(self.client, key) as here:
            return self._fresh(key, fresh_after, parts, fetch, gather, run, deadline, lock, here, read)

    def lead_if_free(
        self,
        key: str,
        fresh_after: float,
        parts: Sequence[str],
        fetch: Callable[[ReadStamp], ReadStamp],
        *,
        read: str = metrics.OTHER,
    ) -> ReadStamp | None:
        """`fresh` without waiting: the read if one fresh enough exists, else this worker fetches it
        (no gathering) if nobody is; None when another worker is fetching it. A run that needs two
        reads asks this for the second before waiting on the first, so that two workers fetch both
        at once instead of one after the other. Only a fetch is counted here: the run uses the read
        later (through `fresh`, which counts a use of another's read as shared)."""
        token = uuid.uuid4().hex
        mine = f"{token} {time.time()}"
        with _LOCAL.asking(self.client, key) as here:
            try:
                stamp, won, _ = self._fresh_or_take_lock(key, f"{key}:lock", fresh_after, mine)
                if stamp is not None or not won:
                    return stamp
                here.leading = mine
                return self._lead(key, mine, ReadStamp(token, time.time()), parts, fetch, here, read)
            except _ERRORS as exc:
                raise CacheUnavailable(f"Valkey is unreachable (shared reads): {exc}") from None

    def _fresh(
        self,
        key: str,
        fresh_after: float,
        parts: Sequence[str],
        fetch: Callable[[ReadStamp], ReadStamp],
        gather: bool,
        run: run_deadline.Deadline,
        deadline: float,
        lock: str,
        here: _Asking,
        read: str,
    ) -> ReadStamp:
        try:
            while True:
                seen = here.landed
                token = uuid.uuid4().hex
                starts = self._start_time(fresh_after, run) if gather else time.time()
                mine = f"{token} {starts}"
                # One round trip: a fresh enough read, else the lock, else who holds it.
                stamp, won, holder = self._fresh_or_take_lock(key, lock, fresh_after, mine)
                if stamp is not None:
                    self.used(read, stamp)
                    return stamp
                if won:
                    here.leading = mine
                    # Nothing fresh was installed when we took the lock (checked atomically).
                    self._pause_until(starts, here)
                    # Stamped now, after the pause: every run asked for until now may share it.
                    return self._lead(key, mine, ReadStamp(token, time.time()), parts, fetch, here, read)
                if time.monotonic() > deadline:
                    run.check("waiting for another worker's shared read")
                    log.warning("shared read %s: the worker fetching it is late; reading myself", key)
                    return self._lead(key, None, ReadStamp(token, time.time()), parts, fetch, here, read)
                # A leader gathering runs fetches only at its start time: no need to poll before
                # (bounded, should its clock be ahead of ours). A leader of this process wakes us
                # as soon as its read lands (it may start before its planned time).
                until_start = min(_start_of(holder) - time.time(), self._gather)
                pause = max(POLL_SECONDS, min(until_start, deadline - time.monotonic()))
                if here.leading and here.leading == _text(holder):
                    # Our process's leader: it wakes us when its read lands, no need to poll.
                    pause = max(POLL_SECONDS, deadline - time.monotonic())
                here.wait_for_landing(seen, pause)
        except _ERRORS as exc:
            raise CacheUnavailable(f"Valkey is unreachable (shared reads): {exc}") from None

    def _fresh_or_take_lock(
        self, key: str, lock: str, fresh_after: float, mine: str
    ) -> tuple[ReadStamp | None, bool, object]:
        """(`key`'s read if it started at or after `fresh_after`, lock taken, lock holder's value)."""
        reply = self._fresh_or_lock(keys=[key, lock], args=[repr(fresh_after), mine, int(self._wait * 1000)])
        if int(reply[0]) == 1:
            stamp = ReadStamp.from_json(reply[1])
            if stamp is not None and stamp.started >= fresh_after:
                return stamp, False, None
            return None, False, None  # unreadable here: wait and ask again
        return None, int(reply[0]) == 2, reply[1] if len(reply) > 1 else None

    def _start_time(self, fresh_after: float, run: run_deadline.Deadline) -> float:
        """When a gathering fetch starts: `gather_seconds` after the request, never later than that
        from now, nor past the run's deadline (a run queued longer than that starts at once)."""
        now = time.time()
        return now + max(0.0, min(fresh_after + self._gather - now, self._gather, run.remaining()))

    def _pause_until(self, starts: float, here: _Asking) -> None:
        """Hold the lock (others asking meanwhile wait for this read) until `starts`, or until every
        worker of this process is inside a shared read, this one or another (no run can start here
        to join it: a worker leading another read was requested earlier and is served anyway)."""
        began = time.time()
        if starts <= began:
            return
        workers = self._workers
        with here.changed:
            here.changed.wait_for(
                lambda: workers is not None and _LOCAL.inside(self.client) >= workers,
                timeout=starts - began,
            )
        self.gathered += min(time.time(), starts) - began  # a late wake-up is not gathering

    def _lead(
        self,
        key: str,
        lock: str | None,
        stamp: ReadStamp,
        parts: Sequence[str],
        fetch: Callable[[ReadStamp], ReadStamp],
        here: _Asking,
        read: str,
    ) -> ReadStamp:
        """Fetch and install `stamp`'s read; then release `lock` (our token), if we hold it, and
        wake this process's waiters."""
        try:
            self.fetched += 1
            done = fetch(stamp)
            self._mine.add(done.version)
            metrics.read_fetched(read)  # a fetch that failed served no run
            for name in parts:
                self.client.expire(self.part(key, done, name), self._ttl + OLD_VERSION_GRACE_SECONDS)
            installed = self._install(
                keys=[key],
                args=[done.to_json(), done.started, self._ttl, OLD_VERSION_GRACE_SECONDS, *parts],
            )
            if not installed:  # a read that started later was installed meanwhile: use that one
                for name in parts:
                    self.client.expire(self.part(key, done, name), OLD_VERSION_GRACE_SECONDS)
                newer = self.current(key)
                return newer if newer is not None else done
            return done
        finally:
            try:
                if lock is not None:
                    self._release(keys=[f"{key}:lock"], args=[lock])
            finally:
                with here.changed:
                    if here.leading == lock:
                        here.leading = ""
                    here.landed += 1
                    here.changed.notify_all()
