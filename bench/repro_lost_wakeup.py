"""Reproduces the sidecar's lost wake-up: `python -m bench.repro_lost_wakeup`.

`wait_for_task_completion` (api/reconciler_api/waiting.py) reads the task, and only afterwards
registers its wake-up event (`TaskNotifier.waiter(...)(pause)`). A finish published between the two
wakes nobody, and the request waits for the next fallback poll (FALLBACK_POLL_SECONDS = 2 s). Here
the read is made 50 ms slow (as it is under load, when the thread pool is queued) and the task
finishes during it; the real helper and notifier, a real valkey-server, nothing else.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from pathlib import Path

from reconciler.cache.valkey import ValkeyCache
from reconciler.models.task import ReconcileRef, TaskRecord, TaskStatus
from reconciler.tasks import TaskStore
from reconciler_api.waiting import TaskNotifier, wait_for_task_completion
from tests.valkey_server import ValkeyProcess


async def once(store: TaskStore, notifier: TaskNotifier, read_delay: float, finish_after: float) -> float:
    record = TaskRecord(
        reconcile=ReconcileRef(namespace="bench", name="race"),
        integration="slack-usergroups",
        status=TaskStatus.RUNNING,
    )
    store.save(record)

    def slow_read() -> TaskRecord:
        got = store.get(record.task_id)
        time.sleep(read_delay)  # the answer is already on its way back when the finish is published
        assert got is not None
        return got

    def finish() -> None:
        time.sleep(finish_after)
        record.status = TaskStatus.SUCCESS
        store.save(record)

    threading.Thread(target=finish, daemon=True).start()
    started = time.perf_counter()
    await wait_for_task_completion(slow_read, 30, wait_for_change=notifier.waiter(record.task_id))
    return time.perf_counter() - started


async def main_async(store: TaskStore) -> None:
    notifier = TaskNotifier(store.cache)
    notifier.start(asyncio.get_running_loop())
    await asyncio.sleep(0.3)  # subscribed
    try:
        for read_delay, finish_after, what in (
            (0.0, 0.2, "finish while waiting (normal case)"),
            (0.05, 0.02, "finish during the status read (the race)"),
        ):
            took = await once(store, notifier, read_delay, finish_after)
            print(f"{what}: answered {took * 1000:.0f} ms after the request")
    finally:
        await asyncio.get_running_loop().run_in_executor(None, notifier.stop)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        valkey = ValkeyProcess(Path(tmp)).start()
        try:
            store = TaskStore(ValkeyCache.from_url(valkey.url), ttl_seconds=600, history_size=5)
            asyncio.run(main_async(store))
        finally:
            valkey.stop()


if __name__ == "__main__":
    main()
