"""The long-poll harness of P3 and P4: N clients wait on N tasks that finish at random times.

For each client: a task record is saved as `running`; the client sends
`GET /reconcile/{id}?timeout_seconds=60` and waits. Once every client has had time to be waiting
(`settle`), a finisher thread saves each record as `success` at a random time in `window` seconds,
in random order, through the same `TaskStore.save` the operator uses (which publishes the finish).
Latency = time the client has read the whole answer - time just before that `save` call.
An answer that is not HTTP 200, not `success`, or that came before its task finished, is an error.
The driver also measures its own event-loop lag, so a slow driver cannot pass for a slow server.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass, field

import aiohttp

from bench.common import percentile
from reconciler.cache.valkey import ValkeyCache
from reconciler.models.task import ReconcileRef, TaskRecord, TaskStatus, utcnow
from reconciler.tasks import TaskStore


@dataclass
class PollRun:
    clients: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    driver_lag_p99_ms: float = 0.0
    seconds: float = 0.0


def make_store(valkey_url: str) -> TaskStore:
    return TaskStore(ValkeyCache.from_url(valkey_url, timeout=5), ttl_seconds=3600, history_size=20)


async def measure(
    base_url: str,
    store: TaskStore,
    clients: int,
    *,
    window: float,
    settle: float,
    seed: int | None = None,
    timeout_seconds: float = 60,
) -> PollRun:
    rng = random.Random(seed)
    started = time.monotonic()
    records = []
    for i in range(clients):
        record = TaskRecord(
            reconcile=ReconcileRef(namespace="bench", name=f"poll-{i % 50}", generation=1),
            integration="slack-usergroups",
            trigger="bench",
            status=TaskStatus.RUNNING,
            started_at=utcnow(),
        )
        store.save(record)
        records.append(record)
    finished_at: dict[str, float] = {}
    run = PollRun(clients)

    lag_samples: list[float] = []
    stop_lag = asyncio.Event()

    async def watch_lag() -> None:
        loop = asyncio.get_running_loop()
        while not stop_lag.is_set():
            t = loop.time()
            await asyncio.sleep(0.01)
            lag_samples.append(max(0.0, loop.time() - t - 0.01) * 1000)

    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_seconds + 30)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:

        async def client(record: TaskRecord) -> None:
            try:
                async with session.get(
                    f"/reconcile/{record.task_id}", params={"timeout_seconds": str(timeout_seconds)}
                ) as response:
                    body = await response.json(content_type=None)
                    answered = time.perf_counter()
                    status = response.status
            except Exception as exc:
                run.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                return
            finish = finished_at.get(record.task_id)
            if status != 200 or body.get("status") != "success":
                run.errors.append(f"HTTP {status}: {str(body)[:120]}")
            elif finish is None or answered < finish:
                run.errors.append("answered before the task finished")
            else:
                run.latencies_ms.append((answered - finish) * 1000)

        lag_task = asyncio.create_task(watch_lag())
        waiting = [asyncio.create_task(client(r)) for r in records]
        await asyncio.sleep(settle)

        order = list(records)
        rng.shuffle(order)
        offsets = sorted(rng.uniform(0, window) for _ in order)

        def finisher() -> None:
            begin = time.perf_counter()
            for offset, record in zip(offsets, order, strict=True):
                delay = begin + offset - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                record.status = TaskStatus.SUCCESS
                record.finished_at = utcnow()
                finished_at[record.task_id] = time.perf_counter()
                store.save(record)

        thread = threading.Thread(target=finisher, name="finisher", daemon=True)
        thread.start()
        await asyncio.gather(*waiting)
        thread.join()
        stop_lag.set()
        await lag_task
    run.driver_lag_p99_ms = percentile(lag_samples, 99)
    run.seconds = time.monotonic() - started
    return run
