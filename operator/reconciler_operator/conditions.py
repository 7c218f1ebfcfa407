"""Status and conditions, as kstatus, Flux, Argo CD and `kubectl wait` read them. Pure functions.

`lastTransitionTime` moves only when a condition's status changes; every condition carries the
generation it describes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from reconciler.errors import ReconcileError
from reconciler.models.base import ActionRecord
from reconciler.models.task import TaskRecord

READY, RECONCILING, STALLED, DRIFTED = "Ready", "Reconciling", "Stalled", "Drifted"
ORDER = (READY, RECONCILING, STALLED, DRIFTED)
"""Drifted is not a kstatus condition: True when a successful dry run planned changes it did not
apply (the external state differs from the spec). Ready keeps its kstatus meaning (the run worked)."""
MAX_STATUS_ACTIONS = 50
STATUS_BUDGET_BYTES = 64 * 1024
"""Status stays under this, however large the plan: the full plan is in the task record."""
MAX_DETAIL_CHARS = 512
"""An action's `detail` (e.g. the e-mails to add) in status is cut to this, naming how many more."""
MAX_TARGET_CHARS = 256
MAX_MESSAGE_CHARS = 4096
"""A condition's message is cut to this (metav1.Condition allows 32768; three of those is 96 KiB)."""

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
            "message": _cut(message, MAX_MESSAGE_CHARS),
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
    """A run has started: name its task at once, so a pipeline can follow it from the Reconcile.

    A generation not yet observed (a new Reconcile: no handler marks it progressing first) is
    observed now, Ready=Unknown, as `progressing` would have said."""
    message = f"task {task_id} running, trigger {trigger}"
    patch: dict[str, Any] = {"taskId": task_id}
    updates = [(RECONCILING, "True", "Running", message)]
    if status.get("observedGeneration") != generation:
        patch["observedGeneration"] = generation
        seen = f"Reconciling generation {generation}"
        updates = [(READY, "Unknown", "Progressing", seen), *updates, (STALLED, "False", "Progressing", seen)]
    patch["conditions"] = set_conditions(
        status.get("conditions") or [], updates, generation=generation, now=now
    )
    return patch


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
        "actions": action_records(record.actions, record.task_id),
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
            _drifted(record, planned),
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


def _drifted(record: TaskRecord, planned: int) -> tuple[str, str, str, str]:
    """After a successful run: does the external state still differ from the spec?"""
    suffix = f" (task {record.task_id})"
    if record.dry_run and planned:
        counts = Counter(action.type for action in record.actions)
        detail = ", ".join(f"{count} {type_}" for type_, count in sorted(counts.items()))
        message = f"{planned} change(s) planned and not applied (dry run): {detail}{suffix}"
        return (DRIFTED, "True", "PlanNotApplied", message)
    if record.dry_run:
        return (DRIFTED, "False", "UpToDate", f"Dry run: nothing differs from the spec{suffix}")
    return (DRIFTED, "False", "UpToDate", f"Everything planned was applied{suffix}")


def action_records(actions: Sequence[ActionRecord], task_id: str = "") -> list[dict[str, str]]:
    """At most MAX_STATUS_ACTIONS actions with bounded details: `a, b and 998 more in task T`."""
    records = [
        {
            "type": _cut(a.type, MAX_TARGET_CHARS),
            "target": _cut(a.target, MAX_TARGET_CHARS),
            "detail": short_detail(a.detail, task_id),
        }
        for a in actions[:MAX_STATUS_ACTIONS]
    ]
    while records and len(json.dumps(records)) > STATUS_BUDGET_BYTES // 2:
        records.pop()  # cannot happen with the limits above; a guard for future fields
    return records


def short_detail(detail: str, task_id: str) -> str:
    """A detail that fits MAX_DETAIL_CHARS; the cut items are counted and the task named."""
    if len(detail) <= MAX_DETAIL_CHARS:
        return detail
    where = f" in task {task_id}" if task_id else ""
    items = detail.split(", ")
    room = MAX_DETAIL_CHARS - len(f" and {len(items)} more{where}")
    kept: list[str] = []
    used = 0
    for item in items:
        if used + len(item) + 2 > room:
            break
        kept.append(item)
        used += len(item) + 2
    if not kept:  # one huge item: cut the text itself
        return _cut(detail, MAX_DETAIL_CHARS - len(f" (cut; full text{where})")) + f" (cut; full text{where})"
    return f"{', '.join(kept)} and {len(items) - len(kept)} more{where}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
