"""The status the operator writes is a ReconcileStatus, the model the CRD's status schema is generated
from: a field the operator writes but the model lacks would be pruned by the API server."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from reconciler.claims import ClaimOwner, ClaimState, claims_status
from reconciler.integrations.gitlab_members.models import gitlab_target
from reconciler.integrations.slack_usergroups.models import slack_usergroup_target
from reconciler.models.base import ActionRecord
from reconciler.models.status import ReconcileStatus
from reconciler.models.task import ReconcileRef, TaskError, TaskRecord, TaskStatus
from reconciler_operator import conditions
from tests import crd_validation as crdv

NOW, LATER = "2026-11-23T08:00:00Z", "2026-11-23T09:00:00Z"


OWNER = ClaimOwner(uid="u1", namespace="team-sre", name="oncall")
CLAIMS = [
    ClaimState(slack_usergroup_target("T0123", "oncall"), OWNER, held=True),
    ClaimState(gitlab_target("https://gitlab.example.com", "group", "acme/" + "x" * 300), OWNER, held=False),
] * 40


def _record(errors: list[TaskError], dry_run: bool) -> TaskRecord:
    return TaskRecord(
        reconcile=ReconcileRef(namespace="ns", name="rec", generation=3),
        integration="slack-usergroups",
        dry_run=dry_run,
        status=TaskStatus.FAILED if errors else TaskStatus.SUCCESS,
        actions=[ActionRecord(type="add_users", target="sre", detail="a@example.com, " * 200)] * 60,
        errors=errors,
    )


def _statuses() -> list[dict[str, Any]]:
    """A Reconcile's life: every patch of reconciler_operator.conditions, merged as the API server does."""
    status: dict[str, Any] = {}
    failure = [TaskError(reason="UnknownUsers", message="no such user", permanent=True)]
    retrying = [TaskError(reason="SlackUnavailable", message="Slack answered HTTP 503")]
    patches = [
        lambda s: conditions.progressing(s, generation=3, now=NOW),
        lambda s: conditions.queued(s, "1" * 32, "create", generation=3, workers=8, now=NOW),
        lambda s: conditions.running(s, "0" * 32, "create", generation=3, now=NOW),
        lambda s: conditions.finished(s, _record([], True), retry_in=None, requested_at="now", now=NOW),
        lambda s: conditions.finished(
            s, _record(failure, False), retry_in=None, requested_at=None, now=LATER
        ),
        lambda s: conditions.finished(s, _record(retrying, False), retry_in=30, requested_at=None, now=LATER),
        lambda s: conditions.not_started(
            s, TaskError(reason="RunInProgress", message="busy"), generation=3, retry_in=5, now=LATER
        ),
        lambda s: conditions.suspended(s, generation=4, now=LATER),
        lambda s: conditions.finished(
            s, _record([], False), retry_in=None, requested_at=None, now=LATER, claims=claims_status(CLAIMS)
        ),
    ]
    seen = []
    for patch in patches:
        status = status | patch(status)
        seen.append(status)
    return seen


@pytest.mark.parametrize("status", _statuses())
def test_every_status_the_operator_writes_is_valid(status: dict[str, Any]) -> None:
    ReconcileStatus.model_validate(status)
    assert crdv.validate_status(status) == []


def test_a_field_the_model_lacks_is_rejected() -> None:
    with pytest.raises(ValidationError, match="phase"):
        ReconcileStatus.model_validate({"phase": "Ready"})
