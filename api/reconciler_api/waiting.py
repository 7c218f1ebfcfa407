"""Long-poll support: wait for a task to finish without blocking the event loop or polling hard.

The operator publishes each finished task's id; one listener thread per process turns those
messages into wake-ups for the waiting requests. A slow fallback poll covers messages lost while
the listener reconnects. FastAPI-only code, so it may be async (README, "Design": sync by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from reconciler.cache.base import CacheBackend
from reconciler.errors import CacheUnavailable
from reconciler.models.task import TaskStatus
from reconciler.tasks import FINISHED_CHANNEL
from reconciler_api.metrics import WAITERS

log = logging.getLogger(__name__)

FALLBACK_POLL_SECONDS = 5.0
"""Only covers notifications lost while the listener reconnects; every waiter re-reads this often."""


class TaskResult(Protocol):
    @property
    def status(self) -> TaskStatus: ...


T = TypeVar("T", bound=TaskResult)


async def wait_for_task_completion(
    get_task_status: Callable[[], T],
    timeout_seconds: float | None,
    *,
    wait_for_change: Callable[[float], Awaitable[None]] | None = None,
    poll_seconds: float = FALLBACK_POLL_SECONDS,
) -> T:
    """Return the task once it is `success`/`failed`, or at once when `timeout_seconds` is None.

    `get_task_status` is sync (it reads the sync cache), so it runs in the thread pool.
    `wait_for_change(seconds)` returns early when the task may have changed; without it, this
    polls every `poll_seconds`. HTTP 408 when the task is still unfinished at the deadline.
    """
    result = await run_in_threadpool(get_task_status)
    if timeout_seconds is None:
        return result
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while not result.status.finished:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise HTTPException(408, f"task still {result.status.value} after {timeout_seconds:g}s")
        pause = min(remaining, poll_seconds)
        if wait_for_change is not None:
            await wait_for_change(pause)
        else:
            await asyncio.sleep(pause)
        result = await run_in_threadpool(get_task_status)
    return result


class TaskNotifier:
    """Wakes waiters for a task id when its finish is published on the cache's channel."""

    def __init__(self, cache: CacheBackend) -> None:
        self._cache = cache
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._listen, name="task-notifier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)

    @contextmanager
    def watch(self, task_id: str) -> Iterator[Callable[[float], Awaitable[None]]]:
        """Register for `task_id` now, before the caller first reads the task, so a finish
        published in between still wakes it; yields `wait(seconds)` for wait_for_task_completion."""
        event = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(event)
        WAITERS.inc()

        async def wait(seconds: float) -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=seconds)
            event.clear()

        try:
            yield wait
        finally:
            WAITERS.dec()
            waiting = self._waiters.get(task_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiters[task_id]

    def _wake(self, task_id: str | None) -> None:
        """On the loop: wake one task's waiters, or everyone (None) after a reconnect."""
        targets = [task_id] if task_id is not None else list(self._waiters)
        for key in targets:
            for event in self._waiters.get(key, ()):
                event.set()

    def _listen(self) -> None:
        assert self._loop is not None
        while not self._stop.is_set():
            try:
                subscription = self._cache.subscribe(FINISHED_CHANNEL)
            except CacheUnavailable:
                self._stop.wait(1.0)
                continue
            self._loop.call_soon_threadsafe(self._wake, None)  # anything missed meanwhile: re-check
            try:
                while not self._stop.is_set():
                    task_id = subscription.get(timeout=1.0)
                    if task_id is not None:
                        self._loop.call_soon_threadsafe(self._wake, task_id)
            except CacheUnavailable:
                log.warning("lost the task notification channel; reconnecting")
            except RuntimeError:  # the loop closed during shutdown
                return
            finally:
                subscription.close()
