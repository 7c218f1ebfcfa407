"""run_integration / run_teardown: plan, claim and apply one Reconcile's spec (operator and CLI alike).

Sync (README, "Design": services are sync); the operator calls it from its bounded worker pool.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import SecretStr, ValidationError
from pydantic.alias_generators import to_camel

from reconciler.claims import Claim, ClaimState, conflict_error
from reconciler.deadline import run_deadline
from reconciler.errors import InvalidSpec, MissingScope, ReconcileError, TransientError
from reconciler.fleet import Fleet
from reconciler.integrations.base import Integration, IntegrationService, RunOutcome
from reconciler.integrations.registry import INTEGRATIONS
from reconciler.models.base import Action
from reconciler.models.spec import ReconcileSpec
from reconciler.settings import Settings
from reconciler.tenancy import HostPolicy

log = logging.getLogger(__name__)


def parse_spec(raw: object) -> ReconcileSpec:
    """Validate a raw `spec` mapping; InvalidSpec names the offending field."""
    try:
        return ReconcileSpec.model_validate(raw)
    except ValidationError as exc:
        raise InvalidSpec(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        location = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"spec.{location}: {message}" if location else f"spec: {message}")
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def target_url(spec: ReconcileSpec) -> tuple[str, str]:
    """The external service's URL a spec names, and that field's path for messages."""
    integration = INTEGRATIONS[spec.integration]
    field = integration.url_field
    return str(getattr(spec.integration_spec, field)), f"spec.{integration.spec_field}.{to_camel(field)}"


def check_hosts(spec: ReconcileSpec, settings: Settings) -> None:
    """HostNotAllowed before anything is sent (and before the Secret is read) where enforced."""
    if settings.enforce_allowed_hosts:
        url, field = target_url(spec)
        HostPolicy.parse(settings.allowed_hosts).check_url(url, field)


def run_integration(
    spec: ReconcileSpec,
    token: SecretStr,
    settings: Settings,
    *,
    dry_run: bool,
    on_planned: Callable[[list[Action]], None] | None = None,
    fleet: Fleet | None = None,
    claim: Claim | None = None,
) -> RunOutcome:
    """Plan, and unless `dry_run`, apply, within `settings.run_deadline_seconds`. Never raises
    ReconcileError: it is returned in the outcome (past the deadline: Timeout, with what was applied).

    With `claim`, the targets are claimed first; those another Reconcile owns are left out of the
    plan (nothing is written to them), the others converge, and the run ends with `Conflict`.
    """
    with run_deadline(settings.run_deadline_seconds):
        return _run_integration(
            spec, token, settings, dry_run=dry_run, on_planned=on_planned, fleet=fleet, claim=claim
        )


def _run_integration(
    spec: ReconcileSpec,
    token: SecretStr,
    settings: Settings,
    *,
    dry_run: bool,
    on_planned: Callable[[list[Action]], None] | None,
    fleet: Fleet | None,
    claim: Claim | None,
) -> RunOutcome:
    outcome = RunOutcome(dry_run=dry_run)
    integration = INTEGRATIONS[spec.integration]
    with _errors_into(outcome, f"{spec.integration} run"), contextlib.ExitStack() as closing:
        service = integration.service(spec.integration_spec, token, settings, fleet)
        closing.callback(service.close)
        conflicts: list[ClaimState] = []
        if claim is not None:
            targets = service.targets()
            service.queue_plan_reads()  # ride with the claims' round trip
            outcome.claims = claim(targets, fleet.riders if fleet is not None else None)
            conflicts = [state for state in outcome.claims if not state.held]
            service.exclude({state.target.name for state in conflicts})
        if not conflicts or len(conflicts) < len(outcome.claims or ()):
            outcome.actions = service.plan()
        refused: ReconcileError | None = None
        if not dry_run and outcome.actions:
            try:
                check_scopes(integration, spec, service)
            except ReconcileError as exc:
                refused = exc  # raised once the plan is saved, as before
            else:
                service.queue_first_call(outcome.actions)  # its token rides with the plan's save
        if on_planned is not None:
            on_planned(outcome.actions)
        if refused is not None:
            raise refused
        if not dry_run and outcome.actions:
            service.apply(outcome)
        if conflicts and outcome.error is None:
            done = "planned" if dry_run else "applied"
            others = (
                f"its other targets: {len(outcome.actions)} action(s) {done}"
                if len(conflicts) < len(outcome.claims or ())
                else "it lists no other target"
            )
            outcome.error = conflict_error(conflicts, others_done=others)
    return outcome


def check_scopes(integration: Integration[Any], spec: ReconcileSpec, service: IntegrationService) -> None:
    """Before the first write: a token without a scope the writes need fails the run as a planning
    error (MissingScope), instead of failing halfway through. Unknown scopes do not block."""
    granted = service.granted_scopes()
    if granted is None:
        return
    needed = integration.needed_scopes(spec.integration_spec, write=True)
    missing = integration.missing_scopes(needed, granted)
    if missing:
        raise MissingScope(
            f"the {spec.integration} token lacks the scope(s) {', '.join(missing)} needed to apply this "
            f"plan (it has: {', '.join(sorted(granted)) or 'none'}); add them, then the next run applies it"
        )


def run_teardown(spec: ReconcileSpec, token: SecretStr, settings: Settings, *, claim: Claim) -> RunOutcome:
    """`deletionPolicy: Delete`: undo the spec's targets this Reconcile owns (or nobody claims); the
    targets another Reconcile owns are left alone. Never raises ReconcileError. Bounded by the same
    deadline as a run."""
    with run_deadline(settings.run_deadline_seconds):
        return _run_teardown(spec, token, settings, claim=claim)


def _run_teardown(spec: ReconcileSpec, token: SecretStr, settings: Settings, *, claim: Claim) -> RunOutcome:
    outcome = RunOutcome()
    integration = INTEGRATIONS[spec.integration]
    with _errors_into(outcome, f"{spec.integration} teardown"), contextlib.ExitStack() as closing:
        service = integration.service(spec.integration_spec, token, settings)
        closing.callback(service.close)
        outcome.claims = claim(service.targets())
        service.exclude({state.target.name for state in outcome.claims if not state.held})
        outcome.actions = service.plan_teardown()
        if outcome.actions:
            check_scopes(integration, spec, service)
            service.apply(outcome)
    return outcome


@contextlib.contextmanager
def _errors_into(outcome: RunOutcome, what: str) -> Iterator[None]:
    """Runs never raise: a ReconcileError becomes the outcome's error, and so does a bug or an
    unexpected library error (as a transient InternalError, retried later; the trace is logged)."""
    try:
        yield
    except ReconcileError as exc:
        outcome.error = exc
    except Exception as exc:
        log.exception("%s failed unexpectedly", what)
        outcome.error = TransientError("InternalError", f"unexpected {type(exc).__name__}; see operator logs")
