"""The P3 baseline: a naive long-poll helper (a fixed 0.5 s polling loop) served by a tiny FastAPI
app over the same TaskStore and Valkey as the sidecar: `python -m bench.baseline_api --port P`.

`wait_for_task_completion` below is that naive helper, as a first version would write it: read the
record, return if finished, else `await asyncio.sleep(0.5)` and read again; 408 at the deadline.
It reads the cache synchronously on the event loop, as such a first version does.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, TypeVar

import uvicorn
from fastapi import FastAPI, HTTPException, Path, Query

from reconciler.cache import connect_cache
from reconciler.models.task import TASK_ID_PATTERN, TaskRecord, TaskStatus
from reconciler.settings import get_settings
from reconciler.tasks import TaskStore

T = TypeVar("T", bound=TaskRecord)


async def wait_for_task_completion(get_task_status: Callable[[], T], timeout_seconds: float | None) -> T:
    """The naive helper: poll every 0.5 s."""
    if timeout_seconds is None:
        return get_task_status()

    start_time = time.time()
    while time.time() - start_time < timeout_seconds:
        result = get_task_status()
        if result.status in {TaskStatus.SUCCESS, TaskStatus.FAILED}:
            return result
        await asyncio.sleep(0.5)  # Non-blocking sleep in event loop

    raise HTTPException(408, "Task still pending")


def create_app() -> FastAPI:
    settings = get_settings()
    state: dict[str, TaskStore] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["store"] = TaskStore(
            connect_cache(settings), ttl_seconds=settings.task_ttl_seconds, history_size=settings.history_size
        )
        yield

    app = FastAPI(title="baseline long-poll (naive helper)", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/reconcile/{task_id}", response_model=TaskRecord)
    async def get_task(
        task_id: Annotated[str, Path(pattern=TASK_ID_PATTERN)],
        timeout_seconds: Annotated[float | None, Query(gt=0, le=300)] = None,
    ) -> TaskRecord:
        def get_status() -> TaskRecord:
            record = state["store"].get(task_id)
            if record is None:
                raise HTTPException(404, f"no task {task_id}")
            return record

        return await wait_for_task_completion(get_status, timeout_seconds)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
