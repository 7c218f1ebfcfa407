"""Status conditions: kstatus-compatible, lastTransitionTime moves only on a status change."""

from __future__ import annotations

import json

from reconciler.models.base import ActionRecord
from reconciler.models.task import ReconcileRef, TaskError, TaskRecord, TaskStatus
from reconciler_operator import conditions

T0, T1, T2 = "2026-11-23T08:00:00Z", "2026-11-23T09:00:00Z", "2026-11-23T10:00:00Z"


def record(errors: list[TaskError] | None = None, actions: int = 2, dry_run: bool = False) -> TaskRecord:
    return TaskRecord(
        reconcile=ReconcileRef(namespace="ns", name="rec", generation=3),
        integration="slack-usergroups",
        dry_run=dry_run,
        status=TaskStatus.FAILED if errors else TaskStatus.SUCCESS,
        applied=0 if errors else actions,
        actions=[ActionRecord(type="add_users", target=f"g{i}", detail="x") for i in range(actions)],
        errors=errors or [],
    )


def by_type(status: dict[str, object]) -> dict[str, dict[str, object]]:
    return {c["type"]: c for c in status["conditions"]}  # type: ignore[index,union-attr,misc]


def test_new_generation_is_unknown_at_once() -> None:
    status = conditions.progressing({}, generation=4, now=T0)
    conds = by_type(status)
    assert status["observedGeneration"] == 4
    assert (conds["Ready"]["status"], conds["Reconciling"]["status"], conds["Stalled"]["status"]) == (
        "Unknown",
        "True",
        "False",
    )
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Reconciling", "Stalled"]


def test_transition_time_moves_only_when_status_changes() -> None:
    first = conditions.finished({}, record(), retry_in=None, requested_at=None, now=T0)
    again = conditions.finished(first, record(), retry_in=None, requested_at=None, now=T1)
    assert by_type(again)["Ready"]["lastTransitionTime"] == T0
    failed = conditions.finished(
        again,
        record([TaskError(reason="UnknownUsers", message="who?", permanent=True)]),
        retry_in=None,
        requested_at=None,
        now=T2,
    )
    assert by_type(failed)["Ready"]["lastTransitionTime"] == T2
    assert by_type(failed)["Reconciling"]["lastTransitionTime"] == T0  # False before and after


def test_permanent_failure_stalls_and_transient_keeps_reconciling() -> None:
    err = [TaskError(reason="UnknownUsers", message="no Slack user has the e-mail x@y.z", permanent=True)]
    stalled = by_type(conditions.finished({}, record(err), retry_in=None, requested_at=None, now=T0))
    assert (stalled["Ready"]["status"], stalled["Stalled"]["status"], stalled["Reconciling"]["status"]) == (
        "False",
        "True",
        "False",
    )
    assert stalled["Ready"]["reason"] == "UnknownUsers" and "x@y.z" in str(stalled["Ready"]["message"])
    down = [TaskError(reason="SlackUnavailable", message="Slack answered HTTP 503")]
    retrying = by_type(conditions.finished({}, record(down), retry_in=8, requested_at=None, now=T0))
    assert (
        retrying["Ready"]["status"],
        retrying["Stalled"]["status"],
        retrying["Reconciling"]["status"],
    ) == ("False", "False", "True")
    assert retrying["Reconciling"]["reason"] == "ProgressingWithRetry" and "8s" in str(
        retrying["Reconciling"]["message"]
    )


def test_rate_limited_is_reconciling_with_the_time_of_the_next_try() -> None:
    busy = [TaskError(reason="RateLimited", message="Slack asked to wait 900s")]
    waiting = by_type(conditions.finished({}, record(busy), retry_in=900, requested_at=None, now=T0))
    assert (waiting["Reconciling"]["status"], waiting["Reconciling"]["reason"]) == ("True", "RateLimited")
    assert "next try at 2026-11-23T08:15:00Z" in str(waiting["Reconciling"]["message"])
    assert (waiting["Ready"]["status"], waiting["Ready"]["reason"]) == ("False", "RateLimited")
    assert waiting["Stalled"]["status"] == "False"


def test_status_fields_and_actions_capped_at_50() -> None:
    status = conditions.finished({}, record(actions=120), retry_in=None, requested_at="r1", now=T0)
    assert len(status["actions"]) == 50
    assert status["summary"] == {"planned": 120, "applied": 120, "failed": 0}
    assert status["lastHandledRequestedAt"] == "r1" and status["lastSuccessTime"] == T0
    assert status["observedGeneration"] == 3 and all(
        c["observedGeneration"] == 3 for c in status["conditions"]
    )
    failed = conditions.finished(
        {},
        record([TaskError(reason="X", message="y", permanent=True)]),
        retry_in=None,
        requested_at=None,
        now=T0,
    )
    assert "lastSuccessTime" not in failed and "lastHandledRequestedAt" not in failed


def test_reasons_for_success_dry_run_and_no_change() -> None:
    assert (
        by_type(conditions.finished({}, record(dry_run=True), retry_in=None, requested_at=None, now=T0))[
            "Ready"
        ]["reason"]
        == "DryRun"
    )
    quiet = by_type(conditions.finished({}, record(actions=0), retry_in=None, requested_at=None, now=T0))[
        "Ready"
    ]
    assert quiet["reason"] == "Succeeded" and "nothing to change" in str(quiet["message"])


def test_suspended_keeps_ready_status_and_says_why() -> None:
    ready = conditions.finished({}, record(), retry_in=None, requested_at=None, now=T0)
    suspended = by_type(conditions.suspended(ready, generation=4, now=T1))
    assert suspended["Ready"]["status"] == "True" and suspended["Ready"]["reason"] == "Suspended"
    assert suspended["Ready"]["lastTransitionTime"] == T0
    assert by_type(conditions.suspended({}, generation=1, now=T1))["Ready"]["status"] == "Unknown"


def test_other_condition_types_are_kept() -> None:
    custom = {"type": "Custom", "status": "True", "reason": "Mine", "message": "", "lastTransitionTime": T0}
    status = conditions.progressing({"conditions": [custom]}, generation=1, now=T1)
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Reconciling", "Stalled", "Custom"]
    assert status["conditions"][-1] == custom  # untouched


def test_a_condition_the_api_server_would_refuse_is_not_written_back() -> None:
    """The CRD requires reason, message and lastTransitionTime: a patch carrying a condition without
    them would be refused as a whole, and the run's status lost."""
    status = conditions.progressing(
        {"conditions": [{"type": "Custom", "status": "True"}]}, generation=1, now=T0
    )
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Reconciling", "Stalled"]


def test_status_stays_under_its_budget_however_large_the_plan() -> None:
    emails = [f"someone.with.a.long.name{i:04d}@department.example.com" for i in range(1000)]
    big = TaskRecord(
        reconcile=ReconcileRef(namespace="ns", name="rec", generation=3),
        integration="slack-usergroups",
        status=TaskStatus.FAILED,
        actions=[
            ActionRecord(type="add_users", target="g" * 2000, detail=", ".join(emails)) for _ in range(200)
        ],
        errors=[TaskError(reason="SlackError", message="m" * 100_000, permanent=True)],
    )
    before = {"conditions": conditions.progressing({}, generation=3, now=T0)["conditions"]}
    status = conditions.finished(before, big, retry_in=None, requested_at="r" * 200, now=T1)
    status = {**status, **conditions.running(status, big.task_id, "interval", generation=3, now=T2)}
    assert len(json.dumps(status).encode()) < conditions.STATUS_BUDGET_BYTES
    first = status["actions"][0]
    assert len(first["detail"]) <= conditions.MAX_DETAIL_CHARS
    assert first["detail"].startswith(emails[0]) and first["detail"].endswith(f"more in task {big.task_id}")
    shown = first["detail"].split(" and ")[0].split(", ")
    assert f"and {1000 - len(shown)} more" in first["detail"]  # the count is exact
    assert conditions.short_detail("a, b", "t") == "a, b"
    assert conditions.short_detail("x" * 5000, "t").endswith("(cut; full text in task t)")


def finish(status: dict[str, object], rec: TaskRecord, now: str = T0) -> dict[str, object]:
    return conditions.finished(status, rec, retry_in=None, requested_at=None, now=now)


def test_a_dry_run_with_changes_is_drifted_and_still_ready() -> None:
    rec = record(actions=3, dry_run=True)
    rec.actions.append(ActionRecord(type="create_usergroup", target="new", detail="x"))
    conds = by_type(finish({}, rec))
    assert (conds["Drifted"]["status"], conds["Drifted"]["reason"]) == ("True", "PlanNotApplied")
    assert conds["Drifted"]["message"].startswith(  # type: ignore[union-attr]
        "4 change(s) planned and not applied (dry run): 3 add_users, 1 create_usergroup"
    )
    assert conds["Ready"]["status"] == "True"  # kstatus: the run worked; drift is not a failure
    assert conds["Drifted"]["observedGeneration"] == 3


def test_drift_clears_once_nothing_differs() -> None:
    drifted = finish({}, record(actions=2, dry_run=True))
    in_sync = by_type(finish(drifted, record(actions=0, dry_run=True), now=T1))
    assert (in_sync["Drifted"]["status"], in_sync["Drifted"]["reason"]) == ("False", "UpToDate")
    assert in_sync["Drifted"]["lastTransitionTime"] == T1


def test_an_applied_run_is_not_drifted() -> None:
    conds = by_type(finish({}, record(actions=2, dry_run=False)))
    assert conds["Drifted"]["status"] == "False"


def test_a_failed_run_leaves_drifted_as_it_was() -> None:
    drifted = finish({}, record(actions=2, dry_run=True))
    failed = by_type(
        finish(drifted, record([TaskError(reason="Unauthorized", message="no", permanent=True)]), now=T1)
    )
    assert failed["Drifted"] == by_type(drifted)["Drifted"]


def test_a_new_reconcile_queued_behind_busy_workers_is_progressing_and_names_its_task() -> None:
    """One write before the run: Ready=Unknown for the generation (kstatus), and the task a pipeline
    can follow from now on (the run then sends no "running" patch)."""
    queued = conditions.queued({}, "t1", "create", generation=2, workers=8, now=T0)
    conds = by_type(queued)
    assert queued["observedGeneration"] == 2 and queued["taskId"] == "t1"
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("Unknown", "Progressing")
    reconciling = conds["Reconciling"]
    assert reconciling["status"] == "True" and "t1 (create) queued" in reconciling["message"]
    assert conds["Stalled"]["status"] == "False"
    assert all(c["observedGeneration"] == 2 and c["lastTransitionTime"] == T0 for c in queued["conditions"])


def test_a_run_of_a_new_reconcile_says_ready_unknown_as_it_starts() -> None:
    """No handler marks a new Reconcile progressing: its first run's "running" patch does."""
    first = conditions.running({}, "t1", "create", generation=1, now=T0)
    conds = by_type(first)
    assert first["observedGeneration"] == 1 and first["taskId"] == "t1"
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("Unknown", "Progressing")
    assert (conds["Reconciling"]["status"], conds["Reconciling"]["reason"]) == ("True", "Running")
    assert conds["Stalled"]["status"] == "False"
    assert all(c["observedGeneration"] == 1 for c in first["conditions"])
    # A generation already observed keeps its Ready: an interval run is not a new generation.
    done = conditions.finished(
        {**first, "conditions": first["conditions"]},
        record(),
        retry_in=None,
        requested_at=None,
        now=T1,
    )
    done["observedGeneration"] = 3
    again = conditions.running(done, "t2", "interval", generation=3, now=T2)
    assert "observedGeneration" not in again
    assert by_type(again)["Ready"] == by_type(done)["Ready"]
    assert by_type(again)["Reconciling"]["reason"] == "Running"
