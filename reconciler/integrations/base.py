"""The small interface every integration implements.

An integration only observes and applies (as a Crossplane provider does): `plan()` reads the
external service and returns typed actions, `apply()` performs them into the run's RunOutcome.
Conditions, events, retries, timing and the task record belong to the shared runner and the operator,
never to an integration.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import SecretStr

from reconciler.errors import ReconcileError
from reconciler.fleet import Fleet
from reconciler.models.base import Action, SpecModel
from reconciler.models.target import Target
from reconciler.settings import Settings

if TYPE_CHECKING:
    from reconciler.claims import ClaimState

SpecT = TypeVar("SpecT", bound=SpecModel)


@dataclass
class RunOutcome:
    """What one run planned and did (`error` None on success): the one result of the run path. The
    shared runner fills in the plan and the claims, `IntegrationService.apply` what was applied and what
    stopped it; the operator turns it into the task record, status and Event, the CLI into its report.

    Apply stops at the first failure: later actions may depend on earlier ones, and the next run
    re-plans from the service's real state, so nothing is ever applied twice.
    """

    actions: list[Action] = field(default_factory=list)
    """The plan."""
    applied: list[Action] = field(default_factory=list)
    failed_action: Action | None = None
    error: ReconcileError | None = None
    dry_run: bool = False
    claims: list[ClaimState] | None = None
    """Who owns each target, when the run claimed (or peeked at) them; None when it did not get that far."""

    @property
    def ok(self) -> bool:
        return self.error is None


class IntegrationService(ABC):
    """A planned run against one external service, bound to one spec and one token."""

    @abstractmethod
    def plan(self) -> list[Action]:
        """Read the current state and return the actions that make it match the spec.

        Raises a permanent ReconcileError when the spec cannot be satisfied (unknown users, ...):
        nothing is written unless the whole plan is valid.
        """

    def apply(self, outcome: RunOutcome) -> None:
        """Perform `outcome.actions` (from `plan()`) in order, one `apply_one` each, up to the first
        failure; each success goes into `outcome.applied`, the failure into `failed_action` and `error`."""
        for action in outcome.actions:
            try:
                self.apply_one(action)
            except ReconcileError as exc:
                outcome.failed_action, outcome.error = action, exc
                self.after_apply(action, exc)
                return
            outcome.applied.append(action)
            self.after_apply(action, None)

    def queue_plan_reads(self) -> None:  # noqa: B027 - optional
        """Queue `plan()`'s first shared-cache reads to ride with the claims' round trip (the run
        calls it after `targets()`, before claiming); `plan()` reads them itself if they did not."""

    def queue_first_call(self, actions: list[Action]) -> None:  # noqa: B027 - optional
        """Queue what the apply's first call of `actions` needs from the shared cache (its budget
        token) to ride with the run's next round trip, the save of its plan."""

    @abstractmethod
    def apply_one(self, action: Action) -> None:
        """Perform one action of this integration's plan; raise a ReconcileError when it fails."""

    def after_apply(self, action: Action, error: ReconcileError | None) -> None:  # noqa: B027 - optional
        """Called once `action` ran, with the error that stopped it (None: it succeeded), e.g. to tell
        a shared cache what changed."""

    @abstractmethod
    def targets(self) -> list[Target]:
        """The external things this spec writes to, keyed for claims (may ask the service, e.g. which
        workspace the token belongs to)."""

    @abstractmethod
    def exclude(self, names: Collection[str]) -> None:
        """Leave the targets named `names` (`Target.name`) out of `plan()` and `plan_teardown()`:
        another Reconcile owns them."""

    @abstractmethod
    def plan_teardown(self) -> list[Action]:
        """The actions that undo this spec when its Reconcile is deleted with `deletionPolicy: Delete`
        (disable user groups, remove the listed members); never the token's own user."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release the run's clients (connection pools); called once the run ends, dry runs included."""

    @abstractmethod
    def identity(self) -> str:
        """Who the token acts as (`reconciler doctor`): one cheap read that proves the token works."""

    def granted_scopes(self) -> frozenset[str] | None:
        """The token's scopes as the service reports them; None when it cannot tell (then the
        runner does not block the run, and a write the token may not make fails as Forbidden)."""
        return None


class Integration(ABC, Generic[SpecT]):
    """Registry entry (reconciler/integrations/registry.py): everything the shared code knows of an
    integration, so a new one touches nothing outside its own folder and its registry line."""

    name: ClassVar[str]
    """Value of `spec.integration`, e.g. `slack-usergroups`."""
    spec_field: ClassVar[str]
    """camelCase name of the spec block, e.g. `slackUsergroups`; the CRD's block and its CEL rules
    (required when chosen, forbidden otherwise) are generated from it and `spec_model`."""
    spec_model: ClassVar[type[SpecModel]]
    example: ClassVar[Mapping[str, Any]]
    """A small valid spec block (camelCase, as in a manifest): the generic tests build Reconciles
    from it, and it shows the block's shape."""
    url_field: ClassVar[str] = "url"
    """The spec block's field holding the service's URL (checked against RECONCILER_ALLOWED_HOSTS)."""
    token_patterns: ClassVar[tuple[str, ...]] = ()
    """Regular expressions of the service's token formats: masked in every log line, even a token
    that was never read from a Secret (reconciler/logs.py)."""
    loggers: ClassVar[tuple[str, ...]] = ()
    """Loggers of the client libraries it uses: `reconciler plan --verbose` shows their DEBUG lines."""

    def manifest(
        self, name: str, namespace: str, block: Mapping[str, Any], secret: str, **spec: Any
    ) -> dict[str, Any]:
        """A Reconcile manifest running this integration with `block` (tests, examples, the demo)."""
        return {
            "apiVersion": "reconciler.dev/v1alpha1",
            "kind": "Reconcile",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "integration": self.name,
                "credentials": {"secretRef": {"name": secret}},
                self.spec_field: dict(block),
                **spec,
            },
        }

    @abstractmethod
    def service(
        self, spec: SpecT, token: SecretStr, settings: Settings, fleet: Fleet | None = None
    ) -> IntegrationService:
        """Build the service for one run; clients are created here and live for that run only.
        With a `fleet`, reads and the rate budget are shared with every run on the same account."""

    def warm_up(self) -> None:
        """Import now what `service` imports lazily (the CLI starts quicker without it): the operator
        calls this at startup, so its first runs do not all wait on one import, holding the GIL."""

    @abstractmethod
    def needed_scopes(self, spec: SpecT, *, write: bool) -> frozenset[str]:
        """The token scopes a run of `spec` needs: to plan it, and with `write` also to apply it."""

    def missing_scopes(self, needed: frozenset[str], granted: frozenset[str]) -> list[str]:
        """Needed scopes the granted ones do not cover (an integration may know broader scopes)."""
        return sorted(needed - granted)
