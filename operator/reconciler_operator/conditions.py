"""Status and conditions, as kstatus, Flux, Argo CD and `kubectl wait` read them. Pure functions.

`lastTransitionTime` moves only when a condition's status changes; every condition carries the
generation it describes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from reconciler.errors import ReconcileError
from reconciler.models.base import ActionRecord
from reconciler.models.task import TaskRecord

READY, RECONCILING, STALLED = "Ready", "Reconciling", "Stalled"
ORDER = (READY, RECONCILING, STALLED)
MAX_STATUS_ACTIONS = 50

Condition = dict[str, Any]


def set_conditions(
    current: Sequence[Mapping[str, Any]],
    updates: Sequence[tuple[str, str, str, str]],
    *,
    generation: int,
    now: str,
) -> list[Condition]:
    """Apply (type, status, reason, message) updates; keep conditions of other types untouched."""
    by_type: dict[str, Condition] = {str(c.get("type")): dict(c) for c in current if c.get("type")}
    for type_, status, reason, message in updates:
        old = by_type.get(type_)
        changed = old is None or old.get("status") != status or not old.get("lastTransitionTime")
        by_type[type_] = {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message[:32768],
            "observedGeneration": generation,
            "lastTransitionTime": now if changed else old["lastTransitionTime"],  # type: ignore[index]
        }
    return sorted(
        by_type.values(), key=lambda c: (ORDER.index(c["type"]) if c["type"] in ORDER else 99, c["type"])
    )


def progressing(status: Mapping[str, Any], *, generation: int, now: str) -> dict[str, Any]:
    """A new generation is seen: Ready=Unknown at once so nobody reads a stale True."""
    message = f"Reconciling generation {generation}"
    return {
        "observedGeneration": generation,
        "conditions": set_conditions(
            status.get("conditions") or [],
            [
                (READY, "Unknown", "Progressing", message),
                (RECONCILING, "True", "Progressing", message),
                (STALLED, "False", "Progressing", message),
            ],
            generation=generation,
            now=now,
        ),
    }


def running(
    status: Mapping[str, Any], task_id: str, trigger: str, *, generation: int, now: str
) -> dict[str, Any]:
    """A run has started: name its task at once, so a pipeline can follow it from the Reconcile."""
    message = f"task {task_id} running, trigger {trigger}"
    return {
        "taskId": task_id,
        "conditions": set_conditions(
            status.get("conditions") or [],
            [(RECONCILING, "True", "Running", message)],
            generation=generation,
            now=now,
        ),
    }


def suspended(status: Mapping[str, Any], *, generation: int, now: str) -> dict[str, Any]:
    message = "spec.suspend is true: no runs until it is false"
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == READY), None)
    ready_status = str(ready.get("status")) if ready else "Unknown"
    return {
        "observedGeneration": generation,
        "conditions": set_conditions(
            status.get("conditions") or [],
            [
                (READY, ready_status, "Suspended", message),
                (RECONCILING, "False", "Suspended", message),
                (STALLED, "False", "Suspended", message),
            ],
            generation=generation,
            now=now,
        ),
    }


def finished(
    status: Mapping[str, Any],
    record: TaskRecord,
    *,
    permanent: bool,
    retry_in: float | None,
    requested_at: str | None,
    now: str,
) -> dict[str, Any]:
    """The status after a run: what was planned and done, and the conditions that say so."""
    generation = record.reconcile.generation
    planned = len(record.actions)
    patch: dict[str, Any] = {
        "observedGeneration": generation,
        "taskId": record.task_id,
        "lastRunTime": now,
        "summary": {"planned": planned, "applied": record.applied, "failed": record.failed},
        "actions": action_records(record.actions),
    }
    if requested_at is not None:
        patch["lastHandledRequestedAt"] = requested_at
    if not record.errors:
        patch["lastSuccessTime"] = now
        reason, message = _success(record, planned)
        updates = [
            (READY, "True", reason, message),
            (RECONCILING, "False", reason, message),
            (STALLED, "False", reason, message),
        ]
    else:
        error = record.errors[0]
        message = f"{error.message} (task {record.task_id})"
        if permanent:
            updates = [
                (READY, "False", error.reason, message),
                (RECONCILING, "False", error.reason, message),
                (STALLED, "True", error.reason, message),
            ]
        else:
            when = _next_try(retry_in, now)
            # A rate limit is a wait, not a failure to retry: Reconciling says so by its own reason.
            retrying = "RateLimited" if error.reason == "RateLimited" else "ProgressingWithRetry"
            updates = [
                (READY, "False", error.reason, message),
                (RECONCILING, "True", retrying, message + when),
                (STALLED, "False", error.reason, message),
            ]
    patch["conditions"] = set_conditions(
        status.get("conditions") or [], updates, generation=generation, now=now
    )
    return patch


def _next_try(retry_in: float | None, now: str) -> str:
    """`; next try at 2026-11-23T08:15:00Z (in 900s)`: when the rescheduled run starts."""
    if retry_in is None:
        return ""
    start = datetime.fromisoformat(now.replace("Z", "+00:00")) + timedelta(seconds=retry_in)
    return f"; next try at {start.strftime('%Y-%m-%dT%H:%M:%SZ')} (retrying in {retry_in:.0f}s)"


def _success(record: TaskRecord, planned: int) -> tuple[str, str]:
    suffix = f" (task {record.task_id})"
    if record.dry_run:
        return "DryRun", f"Dry run: {planned} action(s) planned, nothing written{suffix}"
    if planned == 0:
        return "Succeeded", f"Up to date: nothing to change{suffix}"
    return "Succeeded", f"Applied {record.applied} action(s){suffix}"


def action_records(actions: Sequence[ActionRecord]) -> list[dict[str, str]]:
    return [a.model_dump() for a in actions[:MAX_STATUS_ACTIONS]]


def not_started(
    status: Mapping[str, Any], error: ReconcileError, *, generation: int, retry_in: float, now: str
) -> dict[str, Any]:
    """A run could not start (cache down, run in progress): nothing happened, a retry is scheduled."""
    message = f"{error.message}; retrying in {retry_in:.0f}s"
    return {
        "observedGeneration": generation,
        "conditions": set_conditions(
            status.get("conditions") or [],
            [
                (READY, "False", error.reason, message),
                (RECONCILING, "True", "ProgressingWithRetry", message),
                (STALLED, "False", error.reason, message),
            ],
            generation=generation,
            now=now,
        ),
    }
