"""The Reconcile custom resource's spec, as the operator and the command line read it.

The CRD's OpenAPI schema rejects most bad specs at `kubectl apply`; this model checks the same rules
again, because specs also come from files (`reconciler plan`) and from clusters whose CRD is older
than the operator. The integration blocks (`slackUsergroups`, `gitlabMembers`, ...) are validated by
the integration named in `spec.integration`, found in the registry.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from reconciler.models.base import SpecModel

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"  # noqa: S105 - a pattern, not a secret

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


MAX_DURATION = timedelta(hours=8760)
"""The longest duration a spec may hold (365 days): longer is a typo, and would overflow timers."""
MAX_DURATION_TEXT = "8760h"
TOO_MANY_DIGITS = r"(^|[^.0-9])[0-9]{7,}"
"""A whole number of 7 or more digits: always over MAX_DURATION (except absurd `ms` values), and
checked before parsing so that `99999999999999h` never reaches float or timedelta arithmetic."""


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration (`90s`, `10m`, `1h30m`), as Flux and Kubernetes users write them.

    At most MAX_DURATION: a ValueError, never an OverflowError, for anything longer."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration like 30s, 10m or 1h30m")
    if re.search(TOO_MANY_DIGITS, text):
        raise ValueError(
            f"{text!r} has a number of 7 or more digits; "
            f"use larger units, at most {MAX_DURATION_TEXT} (365 days)"
        )
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text))
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{text!r} is longer than {MAX_DURATION_TEXT} (365 days)")
    return timedelta(seconds=seconds)


def _check_duration(text: str) -> str:
    if parse_duration(text) <= timedelta(0):
        raise ValueError("interval must be longer than zero")
    return text


INTERVAL_RULES: list[JsonValue] = [
    {
        "rule": "self.matches('[1-9]')",
        "message": "interval must be longer than zero",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": "!self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$')"
        f" || (!self.matches('{TOO_MANY_DIGITS}') && duration(self) <= duration('{MAX_DURATION_TEXT}'))",
        "message": f"interval must be at most {MAX_DURATION_TEXT} (365 days)",
        "reason": "FieldValueInvalid",
    },
]
"""The CRD's CEL form of `_check_duration` (the pattern guards `duration()`, which would fail)."""

Duration = Annotated[str, Field(max_length=64), AfterValidator(_check_duration)]


class SecretRef(SpecModel):
    """A key of a Secret in the same namespace as this Reconcile."""

    name: str = Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)
    """Name of the Secret (in the Reconcile's namespace)."""
    key: str = Field(default="token", pattern=SECRET_KEY_PATTERN, max_length=253)
    """Key in the Secret's data that holds the token."""


class Credentials(SpecModel):
    """Where the integration's API token comes from."""

    secret_ref: SecretRef


def _integration_blocks(schema: dict[str, Any]) -> None:
    """The CRD's side of `_validate_integration_block`, from the registry: `integration` is one of its
    names, and each integration's block is required when it is chosen and forbidden otherwise (CEL)."""
    from reconciler.crdgen import model_schema
    from reconciler.integrations.registry import INTEGRATIONS

    properties, required, forbidden = schema["properties"], [], []
    names = [f"{name} (needs spec.{i.spec_field})" for name, i in INTEGRATIONS.items()]
    properties["integration"]["description"] = f"The integration to run: {', '.join(names)}."
    properties["integration"]["enum"] = list(INTEGRATIONS)
    properties["integration"]["maxLength"] = max(len(name) for name in INTEGRATIONS)
    for name, integration in INTEGRATIONS.items():
        field = integration.spec_field
        properties[field] = model_schema(integration.spec_model)
        required.append(
            {
                "rule": f"self.integration != '{name}' || has(self.{field})",
                "message": f"spec.{field} is required when integration is {name}",
                "fieldPath": f".{field}",
                "reason": "FieldValueRequired",
            }
        )
        forbidden.append(
            {
                "rule": f"self.integration == '{name}' || !has(self.{field})",
                "message": f"spec.{field} is only allowed when integration is {name}; remove it",
                "fieldPath": f".{field}",
                "reason": "FieldValueForbidden",
            }
        )
    schema["x-kubernetes-validations"] = required + forbidden


class ReconcileSpec(SpecModel):
    """Which integration to run, its desired state, and how runs happen."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_integration_blocks)

    integration: str
    dry_run: bool = False
    """When true, runs compute and report the plan (status.actions) but write nothing to the external
    service."""
    suspend: bool = False
    """When true, no runs happen at all until it is set back to false."""
    interval: Duration | None = Field(
        default=None,
        json_schema_extra={"pattern": DURATION_PATTERN, "x-kubernetes-validations": INTERVAL_RULES},
    )
    """Optional. Re-run this often to undo drift made outside Git, as a Go-style duration such as 30s,
    10m or 1h30m. Must be longer than zero and at most 8760h (365 days), with no number of 7 or more
    digits. Unset: runs happen only on changes, on operator start and on request."""
    deletion_policy: Literal["Orphan", "Delete"] = "Orphan"
    """What deleting this Reconcile does to its targets (Crossplane's names). Orphan leaves them as they
    are; Delete disables the Slack user groups, or removes the listed GitLab members (never the token's
    own user or a last owner), on the targets this Reconcile owns, before the finalizer is released.
    Either way its claims are released."""
    credentials: Credentials

    _integration_spec: SpecModel = PrivateAttr()

    @model_validator(mode="after")
    def _validate_integration_block(self) -> ReconcileSpec:
        from reconciler.integrations.registry import INTEGRATIONS

        integration = INTEGRATIONS.get(self.integration)
        if integration is None:
            known = ", ".join(sorted(INTEGRATIONS))
            raise ValueError(f"unknown integration {self.integration!r}; known: {known}")
        blocks: dict[str, Any] = dict(self.model_extra or {})
        known_blocks = {i.spec_field for i in INTEGRATIONS.values()}
        unknown = sorted(set(blocks) - known_blocks)
        if unknown:
            raise ValueError(f"unknown field(s) in spec: {', '.join(unknown)}")
        if integration.spec_field not in blocks:
            raise ValueError(f"integration {self.integration} needs spec.{integration.spec_field}")
        others = sorted(set(blocks) - {integration.spec_field})
        if others:
            raise ValueError(
                f"spec.{others[0]} is set but integration is {self.integration}; remove spec.{others[0]}"
            )
        try:
            self._integration_spec = integration.spec_model.model_validate(blocks[integration.spec_field])
        except ValidationError as exc:
            # Re-raise under the block's name so messages say spec.slackUsergroups.usergroups.0...
            raise ValidationError.from_exception_data(
                exc.title,
                [
                    InitErrorDetails(
                        type=PydanticCustomError(error["type"], error["msg"].removeprefix("Value error, ")),
                        loc=(integration.spec_field, *error["loc"]),
                        input=error["input"],
                    )
                    for error in exc.errors()
                ],
            ) from None
        return self

    @property
    def integration_spec(self) -> SpecModel:
        """The validated block of this spec's integration (e.g. a SlackUsergroupsSpec)."""
        return self._integration_spec

    @property
    def interval_delta(self) -> timedelta | None:
        return parse_duration(self.interval) if self.interval else None
