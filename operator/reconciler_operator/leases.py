"""A Reconcile's lock held for a run, renewed by one thread for every run in the process.

A thread per run was started and joined for each lease: with the event loop busy, each start and
join waited for a GIL hand-off, a few ms of every run (P5). One renewer thread keeps them all: it
wakes when the earliest lease is due (a third of its TTL), so a crashed run's lock still frees after
its TTL, and a released lease is never extended again.
"""

from __future__ import annotations

import logging
import threading
import time

from reconciler.cache.base import CacheBackend
from reconciler.errors import CacheUnavailable

log = logging.getLogger(__name__)


class LockLease:
    """Holds a Reconcile's lock for a run and has it renewed until released."""

    def __init__(self, cache: CacheBackend, name: str, owner: str, ttl_seconds: int) -> None:
        self.cache, self.name, self.owner, self.ttl = cache, name, owner, ttl_seconds
        self.due = 0.0
        self._lock = threading.Lock()
        self._released = False

    def __enter__(self) -> LockLease:
        self.due = time.monotonic() + self.ttl / 3
        RENEWER.add(self)
        return self

    def __exit__(self, *_: object) -> None:
        RENEWER.remove(self)
        with self._lock:  # a renewal in progress ends first; none starts after
            self._released = True
        try:
            self.cache.release_lock(self.name, self.owner)
        except CacheUnavailable:
            log.warning("could not release %s (cache down); it expires in %ss", self.name, self.ttl)

    def renew(self) -> None:
        with self._lock:
            if self._released:
                return
            self.due = time.monotonic() + self.ttl / 3
            try:
                if not self.cache.extend_lock(self.name, self.owner, self.ttl):
                    log.warning("lost the lock %s while running", self.name)
            except CacheUnavailable:
                pass


class LeaseRenewer:
    """The one thread renewing every held lease when it is due."""

    def __init__(self) -> None:
        self._leases: set[LockLease] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, lease: LockLease) -> None:
        with self._changed:
            self._leases.add(lease)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lock-leases", daemon=True)
                self._thread.start()
            self._changed.notify()

    def remove(self, lease: LockLease) -> None:
        with self._changed:
            self._leases.discard(lease)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [lease for lease in self._leases if lease.due <= now]
                if not due:
                    earliest = min((lease.due for lease in self._leases), default=now + 60)
                    self._changed.wait(max(0.01, earliest - now))
                    continue
            for lease in due:  # outside the condition: a Valkey call must not block add/remove
                lease.renew()


RENEWER = LeaseRenewer()
