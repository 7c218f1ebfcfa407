"""Sharding (Flux-style): an operator runs only the Reconciles its label selector matches.

Kopf filters handlers by labels with a value, a presence token or a callable per key; a selector's
requirements are grouped by key into one callable each (absent labels are passed as None).
"""

from __future__ import annotations

import functools
from typing import Any

from reconciler.selector import Requirement, parse_selector


def shard_filter(selector: str | None) -> dict[str, Any] | None:
    """`labels=` for the Kopf handlers of a shard; None when the operator runs every Reconcile."""
    if not selector:
        return None
    by_key: dict[str, list[Requirement]] = {}
    for requirement in parse_selector(selector):
        by_key.setdefault(requirement.key, []).append(requirement)
    return {key: functools.partial(_label_matches, tuple(group)) for key, group in by_key.items()}


def _label_matches(requirements: tuple[Requirement, ...], value: str | None, **_: Any) -> bool:
    return all(requirement.matches(value) for requirement in requirements)
