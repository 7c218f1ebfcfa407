"""Prometheus metrics: request latency (this process) and task counts (shared, from the cache)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from reconciler.errors import CacheUnavailable
from reconciler.tasks import TaskStore

REGISTRY = CollectorRegistry()
REQUEST_LATENCY = Histogram(
    "reconciler_api_request_duration_seconds",
    "Sidecar request latency",
    ["method", "route", "status"],
    registry=REGISTRY,
)

WAITERS = Gauge(
    "reconciler_api_waiters", "Requests waiting now for a task to finish (long polls)", registry=REGISTRY
)


class TaskCounts(Collector):
    """Finished runs by integration and outcome, counted by the operators in the shared cache."""

    def __init__(self) -> None:
        self.store: TaskStore | None = None

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        counts = CounterMetricFamily("reconciler_tasks", "Finished runs", labels=["integration", "status"])
        up = GaugeMetricFamily("reconciler_cache_up", "Whether the sidecar reached Valkey at scrape time")
        if self.store is not None:
            try:
                for (integration, status), value in sorted(self.store.counts().items()):
                    counts.add_metric([integration, status], value)
                up.add_metric([], 1)
            except CacheUnavailable:
                up.add_metric([], 0)
        yield counts
        yield up


TASK_COUNTS = TaskCounts()
REGISTRY.register(TASK_COUNTS)


def render_metrics(store: TaskStore) -> bytes:
    TASK_COUNTS.store = store
    return generate_latest(REGISTRY)


async def observe_latency(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    path = getattr(route, "path", "unmatched")
    REQUEST_LATENCY.labels(request.method, path, str(response.status_code)).observe(
        time.perf_counter() - started
    )
    return response
