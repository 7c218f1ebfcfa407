"""Status and conditions, as kstatus, Flux, Argo CD and `kubectl wait` read them. Pure functions.

Every patch is built as a ReconcileStatus (the model the CRD's status schema is generated from), so a
field the API server would prune or reject cannot be written; it is sent as the model's JSON, with only
the fields set. `lastTransitionTime` moves only when a condition's status changes; every condition
carries the generation it describes.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from reconciler.models.base import ActionRecord
from reconciler.models.status import Condition, ReconcileStatus, RunSummary, TargetClaim
from reconciler.models.task import TaskError, TaskRecord

log = logging.getLogger(__name__)

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

ConditionStatus = Literal["True", "False", "Unknown"]
Update = tuple[str, ConditionStatus, str, str]
"""(type, status, reason, message) of one condition to set."""


def patch_of(status: ReconcileStatus) -> dict[str, Any]:
    """The merge patch that writes `status`: its JSON form, only the fields set."""
    return status.model_dump(mode="json", by_alias=True, exclude_unset=True)


def set_conditions(
    current: Sequence[Mapping[str, Any]],
    updates: Sequence[Update],
    *,
    generation: int,
    now: str,
) -> list[Condition]:
    """Apply (type, status, reason, message) updates; keep conditions of other types untouched."""
    previous = {str(c.get("type")): c for c in current if c.get("type")}
    by_type: dict[str, Condition] = {}
    updated = {update[0] for update in updates}
    for type_, condition in previous.items():
        if type_ in updated:
            continue
        try:
            by_type[type_] = Condition.model_validate(condition)
        except ValidationError:  # the API server would refuse the whole patch with it
            log.warning("dropping the %s condition: it is not a valid condition", type_)
    for type_, status, reason, message in updates:
        old = previous.get(type_) or {}
        changed = old.get("status") != status or not old.get("lastTransitionTime")
        by_type[type_] = Condition(
            type=type_,
            status=status,
            reason=reason,
            message=_cut(message, MAX_MESSAGE_CHARS),
            observed_generation=generation,
            last_transition_time=now if changed else old["lastTransitionTime"],
        )
    return sorted(by_type.values(), key=lambda c: (ORDER.index(c.type) if c.type in ORDER else 99, c.type))


def progressing(status: Mapping[str, Any], *, generation: int, now: str) -> dict[str, Any]:
    """A new generation is seen: Ready=Unknown at once so nobody reads a stale True."""
    message = f"Reconciling generation {generation}"
    updates: list[Update] = [
        (READY, "Unknown", "Progressing", message),
        (RECONCILING, "True", "Progressing", message),
        (STALLED, "False", "Progressing", message),
    ]
    conditions = set_conditions(status.get("conditions") or [], updates, generation=generation, now=now)
    return patch_of(ReconcileStatus(observed_generation=generation, conditions=conditions))


def running(
    status: Mapping[str, Any], task_id: str, trigger: str, *, generation: int, now: str
) -> dict[str, Any]:
    """A run has started: name its task at once, so a pipeline can follow it from the Reconcile.

    A generation not yet observed (a new Reconcile: no handler marks it progressing first) is
    observed now, Ready=Unknown, as `progressing` would have said."""
    message = f"task {task_id} running, trigger {trigger}"
    updates: list[Update] = [(RECONCILING, "True", "Running", message)]
    new = ReconcileStatus(task_id=task_id)
    if status.get("observedGeneration") != generation:
        new.observed_generation = generation
        seen = f"Reconciling generation {generation}"
        updates = [(READY, "Unknown", "Progressing", seen), *updates, (STALLED, "False", "Progressing", seen)]
    new.conditions = set_conditions(status.get("conditions") or [], updates, generation=generation, now=now)
    return patch_of(new)


def queued(
    status: Mapping[str, Any], task_id: str, trigger: str, *, generation: int, workers: int, now: str
) -> dict[str, Any]:
    """A new generation's run waits for a worker: Ready=Unknown now (as `progressing`), and its task
    named already, so that this one write also serves as the run's "running" patch."""
    message = f"task {task_id} ({trigger}) queued: all {workers} workers were busy; it runs next"
    updates: list[Update] = [
        (READY, "Unknown", "Progressing", f"Reconciling generation {generation}"),
        (RECONCILING, "True", "Progressing", message),
        (STALLED, "False", "Progressing", f"Reconciling generation {generation}"),
    ]
    conditions = set_conditions(status.get("conditions") or [], updates, generation=generation, now=now)
    return patch_of(ReconcileStatus(observed_generation=generation, task_id=task_id, conditions=conditions))


def suspended(status: Mapping[str, Any], *, generation: int, now: str) -> dict[str, Any]:
    message = "spec.suspend is true: no runs until it is false"
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == READY), None)
    ready_status: ConditionStatus = (
        ready["status"] if ready and ready.get("status") in ("True", "False") else "Unknown"
    )
    updates: list[Update] = [
        (READY, ready_status, "Suspended", message),
        (RECONCILING, "False", "Suspended", message),
        (STALLED, "False", "Suspended", message),
    ]
    conditions = set_conditions(status.get("conditions") or [], updates, generation=generation, now=now)
    return patch_of(ReconcileStatus(observed_generation=generation, conditions=conditions))


def finished(
    status: Mapping[str, Any],
    record: TaskRecord,
    *,
    retry_in: float | None,
    requested_at: str | None,
    now: str,
    claims: Sequence[Mapping[str, object]] | None = None,
) -> dict[str, Any]:
    """The status after a run: what was planned and done, and the conditions that say so. A failed
    run is Stalled when its error is permanent, else Reconciling until the retry in `retry_in` s."""
    generation = record.reconcile.generation
    planned = len(record.actions)
    new = ReconcileStatus(
        observed_generation=generation,
        task_id=record.task_id,
        last_run_time=_time(now),
        summary=RunSummary(planned=planned, applied=record.applied, failed=record.failed),
        actions=action_records(record.actions, record.task_id),
    )
    if requested_at is not None:
        new.last_handled_requested_at = requested_at
    if claims is not None:
        new.claims = [TargetClaim.model_validate(claim) for claim in claims]
    error = record.error
    updates: list[Update]
    if error is None:
        new.last_success_time = _time(now)
        reason, message = _success(record, planned)
        updates = [
            (READY, "True", reason, message),
            (RECONCILING, "False", reason, message),
            (STALLED, "False", reason, message),
            _drifted(record, planned),
        ]
    else:
        message = f"{error.message} (task {record.task_id})"
        if error.permanent:
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
    new.conditions = set_conditions(status.get("conditions") or [], updates, generation=generation, now=now)
    return patch_of(new)


def _next_try(retry_in: float | None, now: str) -> str:
    """`; next try at 2026-11-23T08:15:00Z (in 900s)`: when the rescheduled run starts."""
    if retry_in is None:
        return ""
    start = _time(now) + timedelta(seconds=retry_in)
    return f"; next try at {start.strftime('%Y-%m-%dT%H:%M:%SZ')} (retrying in {retry_in:.0f}s)"


def _time(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def _success(record: TaskRecord, planned: int) -> tuple[str, str]:
    suffix = f" (task {record.task_id})"
    if record.dry_run:
        return "DryRun", f"Dry run: {planned} action(s) planned, nothing written{suffix}"
    if planned == 0:
        return "Succeeded", f"Up to date: nothing to change{suffix}"
    return "Succeeded", f"Applied {record.applied} action(s){suffix}"


def _drifted(record: TaskRecord, planned: int) -> Update:
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


def action_records(actions: Sequence[ActionRecord], task_id: str = "") -> list[ActionRecord]:
    """At most MAX_STATUS_ACTIONS actions with bounded details: `a, b and 998 more in task T`."""
    records = [
        ActionRecord(
            type=_cut(a.type, MAX_TARGET_CHARS),
            target=_cut(a.target, MAX_TARGET_CHARS),
            detail=short_detail(a.detail, task_id),
        )
        for a in actions[:MAX_STATUS_ACTIONS]
    ]
    while records and len(json.dumps([r.model_dump() for r in records])) > STATUS_BUDGET_BYTES // 2:
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
    status: Mapping[str, Any], error: TaskError, *, generation: int, retry_in: float, now: str
) -> dict[str, Any]:
    """A run could not start (cache down, run in progress): nothing happened, a retry is scheduled."""
    message = f"{error.message}; retrying in {retry_in:.0f}s"
    updates: list[Update] = [
        (READY, "False", error.reason, message),
        (RECONCILING, "True", "ProgressingWithRetry", message),
        (STALLED, "False", error.reason, message),
    ]
    conditions = set_conditions(status.get("conditions") or [], updates, generation=generation, now=now)
    return patch_of(ReconcileStatus(observed_generation=generation, conditions=conditions))
