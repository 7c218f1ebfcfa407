"""OperatorContext: what lives as long as the operator process (worker pool, cache, run executor, metrics)."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import kopf
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from reconciler.cache import connect_cache
from reconciler.claims import ClaimOwner, ClaimStore
from reconciler.errors import CacheUnavailable
from reconciler.settings import Settings
from reconciler.tasks import TaskStore
from reconciler_operator.credentials import SecretReader
from reconciler_operator.deletion import Deleter, DeleteReport, DeleteRequest
from reconciler_operator.diffbase import SpecDigestDiffBaseStorage, UnmarkedProgressStorage
from reconciler_operator.executor import RunExecutor, RunReport, RunRequest
from reconciler_operator.objects import ObjectLock, ReconcileObjects
from reconciler_operator.token_cache import CachedTokens

log = logging.getLogger(__name__)

KOPF_PREFIX = "operator.reconciler.dev"
"""Kopf's own annotations. Not bare `reconciler.dev`: Kopf hides every annotation under its prefix
from change detection, which would hide the user's `reconciler.dev/requested-at`."""

WATCHED_ANNOTATIONS = ("reconciler.dev/requested-at", "reconcile.fluxcd.io/requestedAt")
"""The annotations whose change triggers a run (handlers.REQUESTED_AT, FLUX_REQUESTED_AT)."""

RUNS = Counter("reconciler_operator_runs_total", "Runs finished by this operator", ["integration", "status"])
LOOP_LAG = Histogram(
    "reconciler_operator_event_loop_lag_seconds",
    "How late the event loop wakes a 50 ms sleep",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BUSY_WORKERS = Gauge("reconciler_operator_busy_workers", "Worker threads running a service now")
DEFERRED = Gauge("reconciler_operator_deferred_records", "Finished task records waiting for Valkey")
CACHE_MEMORY = Gauge("reconciler_operator_cache_memory_bytes", "Memory Valkey uses (INFO used_memory)")
CACHE_KEYS = Gauge("reconciler_operator_cache_keys", "Keys in the operator's Valkey database (DBSIZE)")
CACHE_USAGE_EVERY = 15.0
"""Seconds between two reads of the cache's memory and key count."""


class Retryable(Protocol):
    """An error to schedule the next try for: a run's TaskError, or a deletion's ReconcileError."""

    @property
    def reason(self) -> str: ...

    @property
    def retry_after(self) -> float | None: ...


class OperatorContext:
    """Built once at startup (Kopf memo `context`); every handler reaches the process's shared parts here."""

    def __init__(
        self, settings: Settings, store: TaskStore, secrets: SecretReader, claims: ClaimStore | None = None
    ) -> None:
        self.settings = settings
        self.pool = ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="reconcile")
        self.store = store
        self.secrets = secrets
        self.claims = claims
        self.objects = ReconcileObjects(secrets.http, mark_threads=settings.max_workers)
        tokens = CachedTokens(secrets, settings.secret_cache_seconds)
        self.run_executor = RunExecutor(settings, store, tokens, self.objects, claims, self.owner_alive)
        self.deleter = Deleter(settings, store, secrets, claims, self.owner_alive)
        self._locks: weakref.WeakValueDictionary[str, ObjectLock] = weakref.WeakValueDictionary()
        self._rate_limited_until: dict[str, float] = {}
        self.runs_submitted = 0
        """Runs handed to `pool` and not finished yet (queued or running); counted on the event loop."""
        self._stop = threading.Event()

    @classmethod
    def create(cls, settings: Settings) -> OperatorContext:
        # Tenant safety: specs name the hosts, so the operator always enforces the allow-list.
        settings = settings.model_copy(update={"enforce_allowed_hosts": True})
        cache = connect_cache(settings)
        store = TaskStore(cache, ttl_seconds=settings.task_ttl_seconds, history_size=settings.history_size)
        return cls(settings, store, SecretReader(), ClaimStore(cache))

    def owner_alive(self, owner: ClaimOwner) -> bool:
        """False only when the Kubernetes API says the claim's owner (that uid) is gone."""
        return self.objects.exists(owner.namespace, owner.name, owner.uid)

    def object_lock(self, key: str) -> ObjectLock:
        """One run at a time per Reconcile inside this process (timer vs. change handlers)."""
        lock = self._locks.get(key)
        if lock is None:
            lock = ObjectLock()
            self._locks[key] = lock
        return lock

    def hold_rate_limited(self, key: str, seconds: float) -> None:
        """A run of `key` was rate limited: its interval timer waits `seconds` (the rescheduled run)."""
        self._rate_limited_until[key] = time.monotonic() + seconds

    def rate_limited(self, key: str) -> bool:
        """Is `key` still waiting out a rate limit? (Forgets it once over.)"""
        until = self._rate_limited_until.get(key)
        if until is not None and time.monotonic() >= until:
            del self._rate_limited_until[key]
            until = None
        return until is not None

    def workers_busy(self) -> bool:
        """Would a run submitted now queue behind others (every worker taken)?"""
        return self.runs_submitted >= self.settings.max_workers

    def run(self, request: RunRequest) -> RunReport:
        """Execute one run; call it in `pool` (the gauge counts runs in progress, not queued)."""
        BUSY_WORKERS.inc()
        try:
            return self.run_executor.execute(request)
        finally:
            BUSY_WORKERS.dec()

    def delete(self, request: DeleteRequest) -> DeleteReport:
        """Apply a deleted Reconcile's deletionPolicy; call it in `pool`."""
        BUSY_WORKERS.inc()
        try:
            return self.deleter.execute(request)
        finally:
            BUSY_WORKERS.dec()

    def backoff(self, retry: int, error: Retryable | None) -> float:
        """Exponential backoff from `backoff_base_seconds`, at least the service's Retry-After.

        A rate limit is rescheduled for exactly when the service said (capped): waiting is not failing,
        so repeated limits do not grow the delay past what the service asks for.
        """
        if error is not None and error.reason == "RateLimited" and error.retry_after:
            return min(error.retry_after, self.settings.retry_after_max_seconds)
        base: float = self.settings.backoff_base_seconds * (2 ** min(retry, 16))
        delay: float = min(base, self.settings.backoff_max_seconds)
        if error is not None and error.retry_after:
            delay = max(delay, min(error.retry_after, self.settings.retry_after_max_seconds))
        return delay

    def count_run(self, integration: str, status: str) -> None:
        RUNS.labels(integration or "unknown", status).inc()

    def start_background(self) -> None:
        if self.settings.operator_metrics_port:
            start_http_server(self.settings.operator_metrics_port)
        threading.Thread(target=self._flush_outbox, name="outbox", daemon=True).start()

    def _flush_outbox(self) -> None:
        """Write deferred records every 2 s; refresh the cache gauges every CACHE_USAGE_EVERY s."""
        next_usage = 0.0
        while not self._stop.wait(2.0):
            if self.store.deferred:
                DEFERRED.set(self.store.flush())
            if time.monotonic() >= next_usage:
                next_usage = time.monotonic() + CACHE_USAGE_EVERY
                try:
                    memory, keys = self.store.cache.usage()
                except CacheUnavailable:
                    continue
                CACHE_MEMORY.set(memory)
                CACHE_KEYS.set(keys)

    def close(self) -> None:
        self._stop.set()
        self.store.flush()
        self.secrets.close()
        self.objects.close()
        self.pool.shutdown(wait=False, cancel_futures=True)


async def watch_loop_lag(interval: float = 0.05) -> None:
    """Measure how late the loop wakes up: the operator's responsiveness, exported as a metric."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(interval)
        LOOP_LAG.observe(max(0.0, loop.time() - started - interval))


def configure_kopf(settings: kopf.OperatorSettings, config: Settings, pool: ThreadPoolExecutor) -> None:
    settings.persistence.progress_storage = UnmarkedProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = SpecDigestDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration", watched_annotations=WATCHED_ANNOTATIONS
    )
    settings.persistence.finalizer = f"{KOPF_PREFIX}/finalizer"
    settings.execution.executor = pool
    settings.execution.max_workers = config.max_workers
    settings.watching.server_timeout = config.watch_server_timeout
    settings.watching.client_timeout = config.watch_client_timeout
    settings.watching.connect_timeout = config.watch_connect_timeout
    settings.posting.level = logging.WARNING  # our own events say what a run did; skip Kopf's chatter
    settings.peering.name = config.kopf_peering_name()  # shards never pause each other
    # Kopf pauses every operator that sees a live peer of the same priority: make them distinct.
    settings.peering.priority = (
        config.peering_priority if config.peering_priority is not None else random.randint(1, 2**31)  # noqa: S311
    )
    settings.peering.mandatory = False
    settings.batching.error_delays = (1, 2, 5, 10, 30, 60)
