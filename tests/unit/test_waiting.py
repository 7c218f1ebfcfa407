"""The sidecar's long-poll helper and the pub/sub notifier that wakes it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest
from fastapi import HTTPException

from reconciler.cache import ValkeyCache
from reconciler.models.task import ReconcileRef, TaskRecord, TaskStatus
from reconciler.tasks import TaskStore
from reconciler_api.waiting import TaskNotifier, wait_for_task_completion
from tests.valkey_server import ValkeyProcess


@dataclass
class Result:
    status: TaskStatus


async def test_without_timeout_returns_at_once() -> None:
    calls = []

    def get() -> Result:
        calls.append(1)
        return Result(TaskStatus.RUNNING)

    assert (await wait_for_task_completion(get, None)).status is TaskStatus.RUNNING
    assert len(calls) == 1


async def test_times_out_with_408() -> None:
    with pytest.raises(HTTPException) as info:
        await wait_for_task_completion(lambda: Result(TaskStatus.PENDING), 0.3, poll_seconds=0.05)
    assert info.value.status_code == 408


async def test_polls_until_finished_without_blocking_the_loop() -> None:
    states = iter([TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.SUCCESS])
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    result = await wait_for_task_completion(lambda: Result(next(states)), 5, poll_seconds=0.1)
    task.cancel()
    assert result.status is TaskStatus.SUCCESS and ticks >= 10


async def test_notifier_wakes_a_waiter_well_before_the_fallback_poll(valkey_server: ValkeyProcess) -> None:
    cache = ValkeyCache.from_url(valkey_server.url)
    store = TaskStore(cache, ttl_seconds=60, history_size=5)
    record = TaskRecord(
        reconcile=ReconcileRef(namespace="ns", name="wake"), integration="x", status=TaskStatus.RUNNING
    )
    store.save(record)
    notifier = TaskNotifier(cache)
    notifier.start(asyncio.get_running_loop())
    await asyncio.sleep(0.3)  # subscribed
    finished_at: list[float] = []

    def finish() -> None:
        time.sleep(0.5)
        record.status = TaskStatus.SUCCESS
        store.save(record)
        finished_at.append(time.monotonic())

    finisher = asyncio.get_running_loop().run_in_executor(None, finish)
    with notifier.watch(record.task_id) as wait_for_change:
        result = await wait_for_task_completion(
            lambda: store.get(record.task_id),  # type: ignore[arg-type,return-value]
            10,
            wait_for_change=wait_for_change,
            poll_seconds=5,
        )
    answered = time.monotonic()
    await finisher
    await asyncio.get_running_loop().run_in_executor(None, notifier.stop)
    assert result.status is TaskStatus.SUCCESS
    assert answered - finished_at[0] < 1.0  # the fallback poll is 5 s: only the notification explains this


async def test_a_finish_published_during_the_first_read_is_not_lost(valkey_server: ValkeyProcess) -> None:
    """The waiter is registered before the first read: a finish that lands during it still wakes."""
    cache = ValkeyCache.from_url(valkey_server.url)
    store = TaskStore(cache, ttl_seconds=60, history_size=5)
    record = TaskRecord(
        reconcile=ReconcileRef(namespace="ns", name="race"), integration="x", status=TaskStatus.RUNNING
    )
    store.save(record)
    notifier = TaskNotifier(cache)
    notifier.start(asyncio.get_running_loop())
    await asyncio.sleep(0.3)
    reads = 0

    def get_status() -> TaskRecord:
        nonlocal reads
        reads += 1
        current = store.get(record.task_id)
        assert current is not None
        if reads == 1:  # the task finishes (and is published) after we read it as running
            finished = current.model_copy(update={"status": TaskStatus.SUCCESS})
            store.save(finished)
            time.sleep(0.2)  # let the notification arrive before we start waiting
        return current

    started = time.monotonic()
    with notifier.watch(record.task_id) as wait_for_change:
        result = await wait_for_task_completion(
            get_status, 10, wait_for_change=wait_for_change, poll_seconds=5
        )
    elapsed = time.monotonic() - started
    await asyncio.get_running_loop().run_in_executor(None, notifier.stop)
    assert result.status is TaskStatus.SUCCESS and reads == 2
    assert elapsed < 1.5  # not the 5 s fallback poll
