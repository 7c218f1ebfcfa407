"""Task records: one by id (optionally waiting for it to finish), and the latest per Reconcile."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from reconciler.models.task import TASK_ID_PATTERN, TaskRecord
from reconciler_api.deps import AuthorizerDep, CallerDep, NotifierDep, StoreDep
from reconciler_api.waiting import wait_for_task_completion

router = APIRouter(tags=["tasks"])

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class ReconcileTasks(BaseModel):
    namespace: str
    name: str
    latest: TaskRecord | None
    recent: list[str]


@router.get("/reconcile/{task_id}", response_model=TaskRecord, responses={404: {}, 408: {}, 503: {}})
async def get_task(
    task_id: Annotated[str, Path(pattern=TASK_ID_PATTERN, description="32 hex digits")],
    store: StoreDep,
    notifier: NotifierDep,
    caller: CallerDep,
    authorizer: AuthorizerDep,
    timeout_seconds: Annotated[
        float | None, Query(gt=0, le=300, description="Wait up to this long for the task to finish")
    ] = None,
) -> TaskRecord:
    unknown = HTTPException(404, f"no task {task_id} (unknown, or expired from the cache)")

    def get_status() -> TaskRecord:
        record = store.get(task_id)
        if record is None:
            raise unknown
        return record

    # A namespace the caller may not read looks exactly like an unknown task: ids leak nothing.
    first = await run_in_threadpool(store.get, task_id)
    if first is None or not await authorizer.may_read(caller, first.reconcile.namespace):
        raise unknown

    if timeout_seconds is None:
        return await wait_for_task_completion(get_status, None)
    with notifier.watch(task_id) as wait_for_change:
        return await wait_for_task_completion(get_status, timeout_seconds, wait_for_change=wait_for_change)


@router.get("/reconciles/{namespace}/{name}", response_model=ReconcileTasks, responses={404: {}, 503: {}})
async def get_reconcile_tasks(
    namespace: Annotated[str, Path(pattern=NAME_PATTERN, max_length=63)],
    name: Annotated[str, Path(pattern=NAME_PATTERN, max_length=253)],
    store: StoreDep,
    caller: CallerDep,
    authorizer: AuthorizerDep,
) -> ReconcileTasks:
    unknown = HTTPException(404, f"no task recorded for Reconcile {namespace}/{name}")
    if not await authorizer.may_read(caller, namespace):
        raise unknown

    def load() -> ReconcileTasks:
        recent = store.history(namespace, name)
        if not recent:
            raise unknown
        return ReconcileTasks(namespace=namespace, name=name, latest=store.get(recent[0]), recent=recent)

    return await run_in_threadpool(load)
