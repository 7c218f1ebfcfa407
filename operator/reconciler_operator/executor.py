"""RunExecutor: one run of one Reconcile, start to finish, in a worker thread (the sync half of the operator).

Order matters for "never lose an outcome, never apply twice": re-read the object if the run was
queued behind another run of it (so it applies the newest spec), take the Reconcile's lock and
write the task as running in one round trip (so two operators or two triggers never run it at once,
and no run holds the lock without its record), name the task in status (that patch travels beside
the run and has landed before the run returns), run the integration, and always write the finished
record (deferred to an outbox if Valkey died, filled up or turned read-only meanwhile). The caller
writes status and the Event from the returned record either way.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from reconciler.cache.valkey import ValkeyCache
from reconciler.claims import Claimer, ClaimOwner, ClaimState, ClaimStore, OwnerAlive
from reconciler.credentials import TokenSource
from reconciler.errors import CacheUnavailable, ReconcileError, TransientError
from reconciler.fleet import Fleet
from reconciler.integrations.base import RunOutcome
from reconciler.models.base import Action
from reconciler.models.spec import parse_duration
from reconciler.models.task import ReconcileRef, TaskError, TaskRecord, TaskStatus, utcnow
from reconciler.runner import check_hosts, parse_spec, run_integration
from reconciler.settings import Settings
from reconciler.tasks import TaskStore, lock_key
from reconciler_operator.leases import LockLease

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FreshObject:
    """The Reconcile as the API server has it now."""

    spec: dict[str, Any]
    generation: int
    status: dict[str, Any]


class Pending(Protocol):
    """The running-status patch in flight."""

    def wait(self) -> None: ...

    async def landed(self) -> None:
        """Wait on the event loop (the handler's way: the worker is free by then)."""


class ObjectSource(Protocol):
    """The Reconcile as the API server has it now (reconciler_operator.objects in the operator)."""

    def read(self, ref: ReconcileRef) -> FreshObject | None: ...

    def mark_running(
        self, ref: ReconcileRef, status: dict[str, Any], task_id: str, trigger: str
    ) -> Pending: ...


@dataclass(frozen=True)
class RunRequest:
    ref: ReconcileRef
    raw_spec: dict[str, Any]
    trigger: str
    task_id: str
    status: dict[str, Any] | None = None
    """The status Kopf saw; with it (or a fresh read) the run names its task in status at start."""
    requested: float = field(default_factory=time.time)
    """When the run was asked for (epoch seconds): explicit runs read state newer than this."""
    uid: str = ""
    """The Reconcile's metadata.uid: who its claims name (none are taken without it)."""
    queued: bool = True
    """Did it wait behind another run of this Reconcile? Then `raw_spec` may be old by the time it
    starts, and the object is re-read. (False only when known: the handler got the lock at once.)"""
    named: bool = False
    """Status names this task already (written with its pending record while it waited for a
    worker): no "running" patch, unless the run found a newer generation."""
    queued_mark: Pending | None = None
    """That queued patch, maybe still in flight: the run waits for it before it starts (it has
    landed long before, unless a worker came free at once), so its pending record and status
    never land after the run's; the event loop does not wait for it."""
    created: datetime = field(default_factory=utcnow)
    """When the task was created (queued): its record's `created_at`."""


EXPLICIT_TRIGGERS = frozenset({"create", "update", "requested"})
"""Runs a person or a pipeline asked for: they must see state read after the request. Interval and
resume runs may use shared reads up to `snapshot_max_age_seconds` old."""


@dataclass(frozen=True)
class RunReport:
    """What `RunExecutor.execute` hands back: the finished record (its `error` says why it failed), or
    why the run did not start; neither when it was not needed (the newest spec is suspended)."""

    record: TaskRecord | None = None
    not_started: TaskError | None = None
    """Why the run could not even start (cache down, lock busy): nothing was done."""
    claims: list[ClaimState] | None = None
    """Who owns each target, when the run got as far as claiming them."""
    running_mark: Pending | None = None
    """The running-status patch, maybe still in flight: the caller awaits it before it writes the
    final status (so the older patch never lands last), and the worker is free meanwhile."""

    @property
    def error(self) -> TaskError | None:
        return self.record.error if self.record is not None else self.not_started


class RunExecutor:
    """Executes runs (`execute`, one per call, in a worker thread); one per operator process."""

    def __init__(
        self,
        settings: Settings,
        store: TaskStore,
        tokens: TokenSource,
        objects: ObjectSource | None = None,
        claims: ClaimStore | None = None,
        owner_alive: OwnerAlive | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.tokens = tokens
        self.objects = objects
        self.claims = claims
        self.owner_alive: OwnerAlive = owner_alive or (lambda _owner: True)

    def execute(self, request: RunRequest) -> RunReport:
        if request.queued_mark is not None:
            request.queued_mark.wait()
        ref = request.ref
        raw_spec, status = request.raw_spec, request.status
        fresh = self.objects.read(ref) if self.objects is not None and request.queued else None
        if fresh is not None:
            raw_spec, status = fresh.spec, fresh.status
            ref = ref.model_copy(update={"generation": fresh.generation})
        if raw_spec.get("suspend"):
            if request.named:
                self._close_unneeded(request, ref, raw_spec)
            return RunReport()
        record = self._record(request, ref, raw_spec, TaskStatus.RUNNING)
        record.started_at = utcnow()
        try:
            self.store.flush()
            # One round trip: the lock, the previous run's record, this one's (running).
            started = self.store.start(record, self.settings.lock_ttl_seconds)
        except CacheUnavailable as exc:
            return RunReport(not_started=TaskError.from_error(exc))
        if started is None:
            busy = TransientError(
                "RunInProgress", "another run of this Reconcile is in progress; retrying after it"
            )
            return RunReport(not_started=TaskError.from_error(busy))

        lock = lock_key(ref.namespace, ref.name)
        with LockLease(self.store.cache, lock, request.task_id, self.settings.lock_ttl_seconds) as lease:
            self._close_interrupted(started.previous)
            marking = None
            named = request.named and ref.generation == request.ref.generation
            if self.objects is not None and status is not None and not named:
                marking = self.objects.mark_running(ref, status, record.task_id, request.trigger)
            fleet = self._fleet(request, raw_spec)
            riders = fleet.riders if fleet is not None else None  # ride with this run's saves
            try:
                outcome = self._run(raw_spec, ref, record, fleet, request.uid)
            except BaseException:
                if marking is not None:
                    marking.wait()  # landed before whatever the caller writes next
                raise
            self._finish(record, outcome)
            lease.stop()
            # One round trip: the record, its count, the lock's release (else each on its own).
            if self.store.save_or_defer(record, unlock=(lock, request.task_id), riders=riders):
                lease.released()
            else:
                self.store.count_finished(record)
        log.info(
            "task %s of %s/%s (%s) %s%s",
            record.task_id,
            ref.namespace,
            ref.name,
            request.trigger,
            record.status.value,
            f": {record.error.reason}" if record.error else "",
        )
        return RunReport(record, claims=outcome.claims, running_mark=marking)

    def record_pending(self, request: RunRequest) -> None:
        """Save the task as pending (it waits for a worker), so the id status names already resolves
        in the sidecar. Best effort: the run's start saves it anyway."""
        record = self._record(request, request.ref, request.raw_spec, TaskStatus.PENDING)
        try:
            self.store.save(record)
        except CacheUnavailable as exc:
            log.info("task %s: pending record not saved (%s)", record.task_id, exc.message)

    def _close_unneeded(self, request: RunRequest, ref: ReconcileRef, raw_spec: dict[str, Any]) -> None:
        """The task status named (pending) will not run: the newest spec is suspended. Its record
        ends now, so a pipeline following it gets an answer."""
        superseded = TaskError(
            reason="Superseded",
            message="spec.suspend is true in the newest spec: this run was not needed",
            permanent=True,
        )
        self._end_as_failed(self._record(request, ref, raw_spec, TaskStatus.PENDING), superseded)

    @staticmethod
    def _record(
        request: RunRequest, ref: ReconcileRef, raw_spec: dict[str, Any], status: TaskStatus
    ) -> TaskRecord:
        return TaskRecord(
            task_id=request.task_id,
            reconcile=ref,
            integration=str(raw_spec.get("integration", "")),
            dry_run=bool(raw_spec.get("dryRun", False)),
            trigger=request.trigger,
            status=status,
            created_at=request.created,
        )

    def _run(
        self, raw_spec: dict[str, Any], ref: ReconcileRef, record: TaskRecord, fleet: Fleet | None, uid: str
    ) -> RunOutcome:
        try:
            spec = parse_spec(raw_spec)
            check_hosts(spec, self.settings)
            token = self.tokens.read_token(ref.namespace, spec.credentials.secret_ref)
        except ReconcileError as exc:
            return RunOutcome(error=exc, dry_run=record.dry_run)

        def planned(actions: list[Action]) -> None:
            record.actions = [a.to_record() for a in actions]  # the one conversion of the plan
            if actions and not spec.dry_run:  # else the finished record follows at once: one write fewer
                self.store.save_or_defer(record, riders=fleet.riders if fleet is not None else None)

        return run_integration(
            spec,
            token,
            self.settings,
            dry_run=spec.dry_run,
            on_planned=planned,
            fleet=fleet,
            claim=self.claimer(uid, ref, peek=spec.dry_run),
        )

    def _fleet(self, request: RunRequest, raw_spec: dict[str, Any]) -> Fleet | None:
        cache = self.store.cache
        if not self.settings.shared_cache or not isinstance(cache, ValkeyCache):
            return None
        fresh_after = request.requested
        if request.trigger not in EXPLICIT_TRIGGERS:
            # An interval run may share a recent read, but never one older than its interval.
            max_age = self.settings.snapshot_max_age_seconds
            with contextlib.suppress(KeyError, ValueError, TypeError):  # no interval: resume, conflict
                max_age = min(max_age, parse_duration(str(raw_spec["interval"])).total_seconds())
            fresh_after -= max_age
        return Fleet.create(cache.client, self.settings, fresh_after=fresh_after, carried=True)

    def claimer(self, uid: str, ref: ReconcileRef, *, peek: bool) -> Claimer | None:
        """Claims as this Reconcile; a dry run only looks (it neither takes nor releases a claim)."""
        if self.claims is None or not uid:
            return None
        owner = ClaimOwner(uid=uid, namespace=ref.namespace, name=ref.name)
        return Claimer(self.claims, owner, self.owner_alive, peek=peek)

    @staticmethod
    def _finish(record: TaskRecord, outcome: RunOutcome) -> None:
        """The outcome into the record (its plan is already there, from `planned`)."""
        record.applied = len(outcome.applied)
        record.failed = 1 if outcome.failed_action is not None else 0
        if outcome.error is not None:
            failed = outcome.failed_action.to_record() if outcome.failed_action else None
            record.errors = [TaskError.from_error(outcome.error, failed)]
        record.status = TaskStatus.FAILED if outcome.error else TaskStatus.SUCCESS
        record.finished_at = utcnow()

    def _close_interrupted(self, previous: TaskRecord | None) -> None:
        """The previous run, still pending/running when we took the lock, died with its operator (or
        its record never reached Valkey): say so (the next run tries again if this save fails)."""
        if previous is None or previous.status.finished:
            return
        interrupted = TaskError(
            reason="Interrupted",
            message=(
                "this run's end was never recorded (the operator stopped, or Valkey refused the "
                "write); a later run replaced it"
            ),
        )
        self._end_as_failed(previous, interrupted)

    def _end_as_failed(self, record: TaskRecord, error: TaskError) -> None:
        """End a task that will never finish by itself as failed with `error` (best effort)."""
        record.status = TaskStatus.FAILED
        record.finished_at = utcnow()
        record.errors = [*record.errors, error]
        try:
            self.store.save(record, new=False)
        except CacheUnavailable as exc:
            log.warning("task %s: could not end it as %s (%s)", record.task_id, error.reason, exc.message)
