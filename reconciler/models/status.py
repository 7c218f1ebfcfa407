"""The Reconcile's status as the operator writes it: the CRD's status schema is generated from it.

The operator builds every status patch as this model (operator/reconciler_operator/conditions.py) and
sends its JSON, so a field it writes cannot be missing here (and pruned by the API server);
tests/unit/test_status_model.py checks the patches against the generated schema too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from reconciler.models.base import ActionRecord

CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"  # an optional DNS prefix/
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class StatusModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", use_attribute_docstrings=True
    )


class Condition(StatusModel):
    """Condition contains details for one aspect of the current state of this resource
    (metav1.Condition)."""

    type: str = Field(pattern=CONDITION_TYPE_PATTERN, max_length=316)
    """Type of condition in CamelCase, e.g. Ready."""
    status: Literal["True", "False", "Unknown"]
    """Status of the condition, one of True, False, Unknown."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation the condition was set for."""
    last_transition_time: datetime
    """Last time the condition changed from one status to another."""
    reason: str = Field(pattern=CONDITION_REASON_PATTERN, min_length=1, max_length=1024)
    """Programmatic identifier (CamelCase) of the reason for the condition's last transition, e.g.
    Succeeded, InvalidSpec, Unauthorized."""
    message: str = Field(max_length=32768)
    """Human-readable message with details about the transition; may be empty."""


class RunSummary(StatusModel):
    """Counts of the latest run's actions."""

    planned: int | None = None
    """Number of actions in the plan."""
    applied: int | None = None
    """Number of actions performed (0 in dry-run mode)."""
    failed: int | None = None
    """Number of actions that failed."""


class TargetClaim(StatusModel):
    """The claim of one target."""

    target: str | None = Field(default=None, max_length=2048)
    """The target's key, e.g. slack:T0123:usergroup:oncall or
    gitlab:https://gitlab.example.com:group:acme/platform."""
    owner: str | None = Field(default=None, max_length=320)
    """The owning Reconcile, as namespace/name."""
    held: bool | None = None
    """True when this Reconcile owns the target."""


class ReconcileStatus(StatusModel):
    """Observed state, written by the operator through the status subresource. Conditions are the
    source of truth (Ready, Reconciling, Stalled; kstatus-compatible)."""

    observed_generation: int | None = None
    """The metadata.generation the latest run (and the Ready condition) refers to."""
    task_id: str | None = None
    """Id of the latest task; GET /reconcile/{taskId} on the sidecar returns its record."""
    last_run_time: datetime | None = None
    """When the latest run finished, successfully or not."""
    last_success_time: datetime | None = None
    """When the latest successful run finished."""
    last_handled_requested_at: str | None = None
    """The value of the reconciler.dev/requested-at (or reconcile.fluxcd.io/requestedAt) annotation
    that the latest run handled."""
    claims: list[TargetClaim] | None = Field(default=None, max_length=50)
    """Who owns each external target this Reconcile lists (Slack workspace + handle, GitLab instance +
    group/project path), as of the latest run, conflicts first (at most 50). Only the owner writes to a
    target; the others are Stalled with reason Conflict."""
    summary: RunSummary | None = None
    actions: list[ActionRecord] | None = Field(default=None, max_length=50)
    """The latest plan (at most 50 entries; the task record in the sidecar has all)."""
    handled_essence: str | None = None
    """Operator bookkeeping, not for users: what the operator last handled (a digest of the spec and
    the requested-at annotations, as JSON), to tell a change from noise. No length limit of its own:
    the annotations it copies are bounded by the API server (256 KiB), as lastHandledRequestedAt is."""
    conditions: list[Condition] | None = Field(
        default=None,
        max_length=8,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Standard Kubernetes conditions: Ready, Reconciling and Stalled (kstatus; kubectl wait
    --for=condition=Ready works on them), and Drifted: True when a dry run's plan is not empty (reason
    PlanNotApplied, with the counts)."""
