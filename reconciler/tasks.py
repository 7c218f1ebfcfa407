"""Task records in the cache: keys, history per Reconcile, finish notifications, and an outbox.

A finished run's record must not be lost when Valkey is down, full or read-only at that moment:
`save_or_defer` keeps it in memory and `flush` writes it once Valkey takes writes again (the operator
flushes periodically).

Memory stays bounded: a record trimmed off its Reconcile's history is deleted at once (not left to
its TTL), except the Reconcile's last failed run, which is kept until a newer run fails. Each save is
one round trip (a script): the history entry is pushed only by a record's first save.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass

from pydantic import ValidationError

from reconciler.cache.base import CacheBackend, HistoryWrite
from reconciler.errors import CacheUnavailable
from reconciler.fleet.riders import Riders
from reconciler.models.task import TASK_ID_PATTERN, ReconcileRef, TaskRecord, TaskStatus

log = logging.getLogger(__name__)

PREFIX = "reconciler"
FINISHED_CHANNEL = f"{PREFIX}:task-finished"
STATS_KEY = f"{PREFIX}:stats:tasks"


def task_key(task_id: str) -> str:
    return f"{PREFIX}:task:{task_id}"


def history_key(namespace: str, name: str) -> str:
    return f"{PREFIX}:reconcile:{namespace}/{name}:tasks"


def last_failed_key(namespace: str, name: str) -> str:
    return f"{PREFIX}:reconcile:{namespace}/{name}:last-failed"


def lock_key(namespace: str, name: str) -> str:
    return f"{PREFIX}:lock:{namespace}/{name}"


def is_task_id(text: str) -> bool:
    return re.fullmatch(TASK_ID_PATTERN, text) is not None


@dataclass(frozen=True)
class Started:
    """A run's start (`TaskStore.start`): the Reconcile's previous run, as its record says now."""

    previous: TaskRecord | None


class TaskStore:
    def __init__(self, cache: CacheBackend, *, ttl_seconds: int, history_size: int) -> None:
        self.cache = cache
        self.ttl_seconds = ttl_seconds
        self.history_size = history_size
        self._deferred: dict[str, TaskRecord] = {}
        self._lock = threading.Lock()

    def save(
        self,
        record: TaskRecord,
        *,
        new: bool = True,
        unlock: tuple[str, str] | None = None,
        riders: Riders | None = None,
    ) -> None:
        """Write the record; a `new` one also goes first in its Reconcile's history, and the records
        trimmed off that history are deleted. With `unlock` (lock, owner): the run's last save, which
        also counts it (`count_finished`) and then releases its lock. Raises CacheUnavailable.

        The run's queued `riders` (its first budget token, its last write-throughs) go first in the
        same round trip; the last save takes all that is left, so a write-through is in Valkey
        before the lock that keeps the next run out is released. When that save fails, they are
        dropped as a failed write-through always was (logged)."""
        try:
            self.cache.save_record(
                task_key(record.task_id),
                record.model_dump_json(),
                self.ttl_seconds,
                self._filing(record, new, unlock),
                riders,
            )
        except CacheUnavailable:
            if unlock is not None and riders is not None:
                riders.forget(f"task {record.task_id}: its final save failed")
            raise

    def start(self, record: TaskRecord, lock_ttl_seconds: int) -> Started | None:
        """A run's start in one round trip: take its Reconcile's lock (owner: the task id), read the
        previous run's record, save `record` as the history's newest. None (nothing written) when
        another run holds the lock. Raises CacheUnavailable."""
        ref = record.reconcile
        found = self.cache.start_record(
            task_key(record.task_id),
            record.model_dump_json(),
            self.ttl_seconds,
            self._filing(record, True, None),
            (lock_key(ref.namespace, ref.name), record.task_id, lock_ttl_seconds),
        )
        if found is None:
            return None
        previous = None
        if found.previous is not None:
            try:
                previous = TaskRecord.model_validate_json(found.previous)
            except ValidationError as exc:
                log.warning("task %s: its record is not valid (%s); not closing it", found.previous_id, exc)
        return Started(previous=previous)

    def _filing(self, record: TaskRecord, new: bool, unlock: tuple[str, str] | None) -> HistoryWrite:
        ref = record.reconcile
        return HistoryWrite(
            key=history_key(ref.namespace, ref.name),
            item=record.task_id,
            keep=self.history_size,
            push=new,
            evict_prefix=task_key(""),
            spare_key=last_failed_key(ref.namespace, ref.name),
            mark_spare=record.status is TaskStatus.FAILED,
            publish=FINISHED_CHANNEL if record.status.finished else None,
            count=(STATS_KEY, self._counter(record)) if unlock else None,
            unlock=unlock,
        )

    def save_or_defer(
        self, record: TaskRecord, *, unlock: tuple[str, str] | None = None, riders: Riders | None = None
    ) -> bool:
        """Save an existing record now, or keep it for `flush()` when the cache refuses it (down, full,
        read-only). True if saved now (with `unlock`, also counted and the lock released: see
        `save`; when deferred, neither)."""
        try:
            self.save(record, new=False, unlock=unlock, riders=riders)
        except CacheUnavailable as exc:
            log.warning(
                "task %s: cache down, keeping its record to write later (%s)", record.task_id, exc.message
            )
            with self._lock:
                self._deferred[record.task_id] = record
            return False
        with self._lock:
            self._deferred.pop(record.task_id, None)
        return True

    def flush(self) -> int:
        """Write deferred records; returns how many are still waiting."""
        with self._lock:
            waiting = list(self._deferred.values())
        for record in waiting:
            try:
                self.save(record, new=False)
            except CacheUnavailable:
                break
            with self._lock:
                if self._deferred.get(record.task_id) is record:
                    del self._deferred[record.task_id]
        with self._lock:
            return len(self._deferred)

    @property
    def deferred(self) -> int:
        with self._lock:
            return len(self._deferred)

    def count_finished(self, record: TaskRecord) -> None:
        """Count a finished run once, by integration and outcome (the sidecar exports these)."""
        try:
            self.cache.incr(STATS_KEY, self._counter(record))
        except CacheUnavailable:
            log.warning("task %s: cache down, not counted in metrics", record.task_id)

    @staticmethod
    def _counter(record: TaskRecord) -> str:
        return f"{record.integration or 'unknown'}|{record.status.value}"

    def counts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for field, value in self.cache.counters(STATS_KEY).items():
            integration, _, status = field.partition("|")
            counts[(integration, status)] = value
        return counts

    def get(self, task_id: str) -> TaskRecord | None:
        with self._lock:
            deferred = self._deferred.get(task_id)
        if deferred is not None:
            return deferred
        return self.cache.get_model(task_key(task_id), TaskRecord)

    def history(self, namespace: str, name: str, limit: int | None = None) -> list[str]:
        """Newest first; the last failed run may follow the `history_size` newest ones."""
        return self.cache.recent(history_key(namespace, name), limit or self.history_size + 1)

    def latest(self, ref: ReconcileRef) -> TaskRecord | None:
        """The newest run's record."""
        ids = self.history(ref.namespace, ref.name, 1)
        return self.get(ids[0]) if ids else None
