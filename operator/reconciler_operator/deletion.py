"""A Reconcile's deletion, in a worker thread: apply its `deletionPolicy`, then release its claims.

`Orphan` (the default) leaves every target as it is. `Delete` disables the Slack user groups, or
removes the listed GitLab members (never the token's own user or a last owner), on the targets this
Reconcile owns; targets another Reconcile owns are never touched. The Reconcile's lock is held
meanwhile, so no run of it writes at the same time. Claims are released once the work is done,
failed for good, or was given up after `delete_retries` (`final`); a transient failure before that
keeps them, so nobody else takes a target that is still about to be cleaned up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from reconciler.claims import Claimer, ClaimOwner, ClaimStore, OwnerAlive
from reconciler.credentials import TokenSource
from reconciler.errors import CacheUnavailable, ReconcileError, TransientError
from reconciler.models.base import ActionRecord
from reconciler.models.task import ReconcileRef
from reconciler.runner import parse_spec, run_teardown
from reconciler.settings import Settings
from reconciler.tasks import TaskStore, lock_key
from reconciler_operator.leases import LockLease

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeleteRequest:
    ref: ReconcileRef
    uid: str
    raw_spec: dict[str, Any]
    final: bool
    """The last attempt: release the claims even if the work failed."""


@dataclass
class DeleteReport:
    policy: str
    done: list[ActionRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Targets left alone because another Reconcile owns them (as `label (owner ns/name)`)."""
    released: list[str] = field(default_factory=list)
    error: ReconcileError | None = None
    note: str = ""

    @property
    def retry(self) -> bool:
        return self.error is not None and not self.error.permanent


class Deleter:
    def __init__(
        self,
        settings: Settings,
        store: TaskStore,
        tokens: TokenSource,
        claims: ClaimStore | None,
        owner_alive: OwnerAlive,
    ) -> None:
        self.settings, self.store, self.tokens = settings, store, tokens
        self.claims, self.owner_alive = claims, owner_alive

    def execute(self, request: DeleteRequest) -> DeleteReport:
        policy = str(request.raw_spec.get("deletionPolicy") or "Orphan")
        ref = request.ref
        lock, holder = lock_key(ref.namespace, ref.name), f"delete-{request.uid}"
        try:
            if not self.store.cache.acquire_lock(lock, holder, self.settings.lock_ttl_seconds):
                return DeleteReport(
                    policy, error=TransientError("RunInProgress", "a run is in progress; deleting after it")
                )
        except CacheUnavailable as exc:
            return DeleteReport(policy, error=exc)
        with LockLease(self.store.cache, lock, holder, self.settings.lock_ttl_seconds):
            report = self._apply_policy(request, policy)
            if report.error is None or report.error.permanent or request.final:
                report.released = self._release(request)
        return report

    def _apply_policy(self, request: DeleteRequest, policy: str) -> DeleteReport:
        report = DeleteReport(policy)
        if policy != "Delete":
            report.note = "deletionPolicy Orphan: the targets are left as they are"
            return report
        try:
            spec = parse_spec(request.raw_spec)
            if spec.dry_run:
                report.note = "dryRun is true: nothing is written, the targets are left as they are"
                return report
            token = self.tokens.read_token(request.ref.namespace, spec.credentials.secret_ref)
        except ReconcileError as exc:
            report.error = exc
            return report
        if self.claims is None:
            report.error = TransientError("CacheUnavailable", "claims are not available")
            return report
        owner = ClaimOwner(uid=request.uid, namespace=request.ref.namespace, name=request.ref.name)
        outcome = run_teardown(
            spec, token, self.settings, claim=Claimer(self.claims, owner, self.owner_alive)
        )
        report.done = [a.to_record() for a in outcome.applied]
        report.skipped = [
            f"{s.target.label} (owned by {s.owner.display})" for s in outcome.claims or [] if not s.held
        ]
        report.error = outcome.error
        planned = len(outcome.actions)
        report.note = f"deletionPolicy Delete: {len(report.done)} of {planned} action(s) applied"
        return report

    def _release(self, request: DeleteRequest) -> list[str]:
        if self.claims is None:
            return []
        owner = ClaimOwner(uid=request.uid, namespace=request.ref.namespace, name=request.ref.name)
        try:
            return self.claims.release_all_but(owner)
        except ReconcileError as exc:
            # The claims stay; the next claimant finds their owner gone and takes them over.
            log.warning("could not release the claims of %s: %s", owner.display, exc.message)
            return []
