"""The echo spec block, what the echo service has, and the two actions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, HttpUrl, field_validator

from reconciler.models.base import Action, Observed, SpecModel, reject_duplicates

ITEM_PATTERN = r"^[a-z0-9][a-z0-9-]*$"


class EchoSpec(SpecModel):
    """Items the echo service must hold; items not listed are removed."""

    url: HttpUrl
    """Base URL of the echo service."""
    items: list[str] = Field(
        default_factory=list, max_length=20, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """The items, e.g. hello."""

    @field_validator("items")
    @classmethod
    def _unique(cls, items: list[str]) -> list[str]:
        reject_duplicates(items, "items")
        return items


class EchoState(Observed):
    items: frozenset[str] = frozenset()


class AddItem(Action):
    type: Literal["add_item"] = "add_item"


class RemoveItem(Action):
    type: Literal["remove_item"] = "remove_item"
