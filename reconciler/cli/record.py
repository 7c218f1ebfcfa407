"""`reconciler apply --record`: keep each run as a task record, as the operator does.

Why: without a cluster there is no operator to write records, yet `reconciler status` and the sidecar
read them. Recording lets a laptop (and `make demo`) walk through plan -> apply -> status.
"""

from __future__ import annotations

from reconciler.cache import connect_cache
from reconciler.cli.output import ReconcileResult
from reconciler.models.task import ReconcileRef, TaskError, TaskRecord, TaskStatus, utcnow
from reconciler.settings import Settings
from reconciler.tasks import TaskStore


def to_record(result: ReconcileResult) -> TaskRecord:
    """The task record of one apply result (trigger `cli`)."""
    now = utcnow()
    applied = result.applied or []
    errors = [TaskError(reason=result.error.reason, message=result.error.message)] if result.error else []
    return TaskRecord(
        status=TaskStatus.FAILED if errors else TaskStatus.SUCCESS,
        reconcile=ReconcileRef(namespace=result.namespace, name=result.name),
        integration=result.integration,
        dry_run=result.dry_run,
        trigger="cli",
        actions=list(result.actions),
        applied=len(applied),
        failed=1 if errors and len(applied) < len(result.actions) else 0,
        errors=errors,
        created_at=now,
        started_at=now,
        finished_at=now,
    )


def record_results(results: list[ReconcileResult], settings: Settings) -> list[TaskRecord]:
    """Save one finished task record per result; raises CacheUnavailable when Valkey cannot be reached."""
    cache = connect_cache(settings)
    store = TaskStore(cache, ttl_seconds=settings.task_ttl_seconds, history_size=settings.history_size)
    records = [to_record(result) for result in results if result.name]
    for record in records:
        store.save(record)
        store.count_finished(record)
    return records
