"""Pydantic base classes shared by every boundary model."""

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class SpecModel(BaseModel):
    """Part of a Reconcile's spec: camelCase on the wire, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
        use_attribute_docstrings=True,  # the docstrings are the CRD's descriptions (reconciler/crdgen.py)
    )


class Observed(BaseModel):
    """What a client read from the external service, as a planner gets it: immutable, so a plan
    cannot alter what it was computed from. Integrations subclass it for their observed state."""

    model_config = ConfigDict(frozen=True)


class Action(BaseModel):
    """One change a plan wants. Integrations subclass it with a Literal `type` and typed fields.

    Actions are frozen so a plan cannot be altered between planning and applying.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    target: str

    @property
    def detail(self) -> str:
        """A short human-readable description of what changes (shown in status and the task record)."""
        return ""

    def to_record(self) -> "ActionRecord":
        return ActionRecord(type=self.type, target=self.target, detail=self.detail)


class ActionRecord(BaseModel):
    """The contract's `{type, target, detail}` form of an action, as stored and shown."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    type: str
    """Kind of change, e.g. add_users or add_member."""
    target: str
    """What the change applies to, e.g. a user group handle or a group path."""
    detail: str = ""
    """Human-readable detail of the change."""


def reject_duplicates(values: list[str], what: str) -> None:
    """Raise a ValueError naming every value that appears more than once (for spec validators)."""
    seen: set[str] = set()
    duplicates: set[str] = set()
    for value in values:
        (duplicates if value in seen else seen).add(value)
    if duplicates:
        raise ValueError(f"duplicate {what}: {', '.join(sorted(duplicates))}")
