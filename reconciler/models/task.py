"""The task record: one run of one Reconcile, stored as JSON in the cache and served by the sidecar."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from reconciler.errors import ReconcileError
from reconciler.models.base import ActionRecord

TASK_ID_PATTERN = r"^[0-9a-f]{32}$"


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (TaskStatus.SUCCESS, TaskStatus.FAILED)


class ReconcileRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str
    generation: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class TaskError(BaseModel):
    """Why a run failed: a condition reason (`UnknownUsers`, ...) and a message a person can act on.

    The one form a run's error takes after the run: the record, the status conditions, the Event and
    the retry schedule all read it (a ReconcileError is converted once, by `from_error`).
    """

    model_config = ConfigDict(frozen=True)

    reason: str
    message: str
    action: ActionRecord | None = None
    """The action that failed, when applying one did."""
    permanent: bool = False
    """True when retrying cannot fix it (bad spec, unknown users, rejected token): Stalled, no retry."""
    retry_after: float | None = None
    """Seconds the service asked us to wait before the next try (a rate limit), if it said."""

    @classmethod
    def from_error(cls, error: ReconcileError, action: ActionRecord | None = None) -> TaskError:
        return cls(
            reason=error.reason,
            message=error.message,
            action=action,
            permanent=error.permanent,
            retry_after=error.retry_after,
        )


def new_task_id() -> str:
    return secrets.token_hex(16)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class TaskRecord(BaseModel):
    """The contract's task record. Unknown fields are kept so that newer writers do not lose data."""

    model_config = ConfigDict(extra="allow")

    task_id: str = Field(default_factory=new_task_id, pattern=TASK_ID_PATTERN)
    status: TaskStatus = TaskStatus.PENDING
    reconcile: ReconcileRef
    integration: str
    dry_run: bool = False
    trigger: str = ""
    actions: list[ActionRecord] = Field(default_factory=list)
    applied: int = 0
    failed: int = 0
    errors: list[TaskError] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def error(self) -> TaskError | None:
        """Why the run failed (the first error); None when it succeeded."""
        return self.errors[0] if self.errors else None
