"""Pure: the actions that make the echo service hold exactly the spec's items."""

from __future__ import annotations

from collections.abc import Collection

from reconciler.models.base import Action
from tests.echo.models import AddItem, EchoState, RemoveItem


def plan(items: Collection[str], state: EchoState) -> list[Action]:
    adds: list[Action] = [AddItem(target=item) for item in sorted(set(items) - state.items)]
    removes: list[Action] = [RemoveItem(target=item) for item in sorted(state.items - set(items))]
    return adds + removes


def plan_teardown(items: Collection[str], state: EchoState) -> list[Action]:
    return [RemoveItem(target=item) for item in sorted(set(items) & state.items)]
