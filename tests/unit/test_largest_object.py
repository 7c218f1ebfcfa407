"""The largest Reconcile the CRD accepts stays under the API server's limits, with room to spare.

etcd stores at most 1.5 MiB per object and the API server allows 256 KiB of annotations. A stored
Reconcile holds its spec, about as much again in `managedFields` when applied server-side (one entry
per list item), Kopf's annotations (a digest of the spec, not a copy: see diffbase.py) and a status
kept under conditions.STATUS_BUDGET_BYTES. Both integrations' largest specs are built from the CRD's
own maxItems/maxLength, so raising a limit past this budget fails here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
import pytest

from reconciler.models.base import ActionRecord
from reconciler.models.spec import ReconcileSpec
from reconciler.models.task import ReconcileRef, TaskError, TaskRecord, TaskStatus
from reconciler.settings import Settings
from reconciler_operator import conditions
from reconciler_operator.context import configure_kopf
from tests.crd_validation import validate_reconcile
from tests.largest import largest_gitlab_reconcile, largest_slack_reconcile

MAX_OBJECT_BYTES = 1536 * 1024
MAX_ANNOTATIONS_BYTES = 256 * 1024
KOPF_ANNOTATIONS_BUDGET = 8 * 1024
"""Kopf's progress (one small record per handler) and diff-base annotations."""
HEADROOM = 128 * 1024
"""Left for the user's own labels and annotations."""

URL = "https://" + "h" * 2000 + ".example.com/api/"
BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "slack": lambda: largest_slack_reconcile("n" * 253, "s" * 63, URL),
    "gitlab": lambda: largest_gitlab_reconcile("n" * 253, "s" * 63, URL.removesuffix("/api/")),
}


def size(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def worst_status(obj: dict[str, Any]) -> dict[str, Any]:
    """Every target gets an action whose detail lists everything; the error message is huge."""
    spec = obj["spec"]
    block = spec.get("slackUsergroups") or spec["gitlabMembers"]
    targets = block.get("usergroups") or [*block.get("groups", []), *block.get("projects", [])]
    actions = [
        ActionRecord(type="add_users", target=t.get("handle") or t["path"], detail=json.dumps(t))
        for t in targets
        for _ in range(3)
    ]
    record = TaskRecord(
        reconcile=ReconcileRef(namespace="s" * 63, name="n" * 253, generation=2**40),
        integration=spec["integration"],
        status=TaskStatus.FAILED,
        actions=actions,
        errors=[TaskError(reason="SlackError", message="m" * 100_000)],
    )
    before = conditions.progressing({}, generation=2**40, now="2026-11-29T00:00:00Z")
    status = conditions.finished(
        before, record, retry_in=600.0, requested_at="r" * 1000, now="2026-11-29T00:00:00Z"
    )
    return {
        **status,
        **conditions.running(status, record.task_id, "requested", generation=2, now="2026-11-29T00:00:01Z"),
    }


def kopf_diff_base(obj: dict[str, Any]) -> dict[str, Any]:
    """What Kopf's diff base storage writes for `obj` (into status, beside the operator's own)."""
    settings = kopf.OperatorSettings()
    with ThreadPoolExecutor(max_workers=1) as executor:
        configure_kopf(settings, Settings(valkey_url="unused"), executor)
    body = kopf.Body(obj)
    patch = kopf.Patch()
    storage = settings.persistence.diffbase_storage
    storage.store(body=body, patch=patch, essence=storage.build(body=body))
    return dict(patch["status"])


@pytest.mark.parametrize("integration", sorted(BUILDERS))
def test_the_largest_accepted_reconcile_fits_the_api_servers_limits(integration: str) -> None:
    obj = BUILDERS[integration]()
    assert validate_reconcile(obj) == []  # the API server accepts it...
    ReconcileSpec.model_validate(obj["spec"])  # ...and so does the operator
    diff_base = kopf_diff_base(obj)
    assert size(diff_base) < 1024  # a digest, not a copy of the spec
    status = {**worst_status(obj), **diff_base}
    assert size(status) < conditions.STATUS_BUDGET_BYTES
    stored = {**obj, "status": status}
    managed_fields = size(obj["spec"])  # server-side apply: about one entry per item of the spec
    total = size(stored) + managed_fields + KOPF_ANNOTATIONS_BUDGET
    assert total + HEADROOM <= MAX_OBJECT_BYTES, f"{total} bytes"
    assert KOPF_ANNOTATIONS_BUDGET + HEADROOM <= MAX_ANNOTATIONS_BYTES


@pytest.mark.parametrize("integration", sorted(BUILDERS))
def test_one_more_item_is_rejected_by_crd_and_model(integration: str) -> None:
    obj = BUILDERS[integration]()
    spec = obj["spec"]
    if integration == "slack":
        groups = spec["slackUsergroups"]["usergroups"]
        groups.append({**groups[0], "handle": "one-more", "name": "One more"})
        where = "spec.slackUsergroups.usergroups"
    else:
        members = spec["gitlabMembers"]["groups"][0]["members"]
        members.append({**members[0], "username": "one-more"})
        where = "spec.gitlabMembers.groups[0].members"
    errors = [str(e) for e in validate_reconcile(obj)]
    assert any(where in e and "Too many" in e for e in errors), errors
    with pytest.raises(ValueError):
        ReconcileSpec.model_validate(spec)
