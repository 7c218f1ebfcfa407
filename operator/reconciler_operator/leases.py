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
from reconciler.due import DueWatch
from reconciler.errors import CacheUnavailable

log = logging.getLogger(__name__)


class LockLease:
    """Holds a Reconcile's lock for a run and has it renewed until released."""

    def __init__(self, cache: CacheBackend, name: str, owner: str, ttl_seconds: int) -> None:
        self.cache, self.name, self.owner, self.ttl = cache, name, owner, ttl_seconds
        self.due = 0.0
        self._lock = threading.Lock()
        self._released = False
        self._handed_over = False

    def __enter__(self) -> LockLease:
        self.due = time.monotonic() + self.ttl / 3
        RENEWER.add(self)
        return self

    def stop(self) -> None:
        """No more renewals: the lock is about to be released by the run's last save."""
        with self._lock:  # a renewal in progress ends first; none starts (or re-arms) after
            self._released = True
        RENEWER.discard(self)

    def released(self) -> None:
        """The run's last save released the lock (see `TaskStore.save`): nothing left to do."""
        self.stop()
        self._handed_over = True

    def __exit__(self, *_: object) -> None:
        self.stop()
        if self._handed_over:
            return
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
            RENEWER.add(self)  # due again in a third of the TTL

    def fire(self) -> None:
        """Due (DueWatch): renew."""
        self.renew()


RENEWER: DueWatch[LockLease] = DueWatch("lock-leases")
"""The one thread renewing every held lease when it is due."""
