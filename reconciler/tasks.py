"""Task records in the cache: keys, history per Reconcile, finish notifications, and an outbox.

A finished run's record must not be lost when Valkey is down at that moment: `save_or_defer` keeps
it in memory and `flush` writes it once Valkey is back (the operator flushes periodically).
"""

from __future__ import annotations

import logging
import re
import threading

from reconciler.cache.base import CacheBackend
from reconciler.errors import CacheUnavailable
from reconciler.models.task import TASK_ID_PATTERN, ReconcileRef, TaskRecord

log = logging.getLogger(__name__)

PREFIX = "reconciler"
FINISHED_CHANNEL = f"{PREFIX}:task-finished"
STATS_KEY = f"{PREFIX}:stats:tasks"


def task_key(task_id: str) -> str:
    return f"{PREFIX}:task:{task_id}"


def history_key(namespace: str, name: str) -> str:
    return f"{PREFIX}:reconcile:{namespace}/{name}:tasks"


def lock_key(namespace: str, name: str) -> str:
    return f"{PREFIX}:lock:{namespace}/{name}"


def is_task_id(text: str) -> bool:
    return re.fullmatch(TASK_ID_PATTERN, text) is not None


class TaskStore:
    def __init__(self, cache: CacheBackend, *, ttl_seconds: int, history_size: int) -> None:
        self.cache = cache
        self.ttl_seconds = ttl_seconds
        self.history_size = history_size
        self._deferred: dict[str, TaskRecord] = {}
        self._lock = threading.Lock()

    def save(self, record: TaskRecord) -> None:
        """Write the record; a new one also goes first in its Reconcile's history. Raises CacheUnavailable."""
        self.cache.set_model(task_key(record.task_id), record, self.ttl_seconds)
        ref = record.reconcile
        self.cache.push_recent(
            history_key(ref.namespace, ref.name),
            record.task_id,
            keep=self.history_size,
            ttl_seconds=self.ttl_seconds,
        )
        if record.status.finished:
            self.cache.publish(FINISHED_CHANNEL, record.task_id)

    def save_or_defer(self, record: TaskRecord) -> bool:
        """Save now, or keep for `flush()` when the cache is down. True if saved now."""
        try:
            self.save(record)
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
                self.save(record)
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
            self.cache.incr(STATS_KEY, f"{record.integration or 'unknown'}|{record.status.value}")
        except CacheUnavailable:
            log.warning("task %s: cache down, not counted in metrics", record.task_id)

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
        return self.cache.recent(history_key(namespace, name), limit or self.history_size)

    def latest(self, ref: ReconcileRef) -> TaskRecord | None:
        ids = self.history(ref.namespace, ref.name, 1)
        return self.get(ids[0]) if ids else None
