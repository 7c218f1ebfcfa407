"""Kubernetes label selectors (`kubectl -l` syntax), for sharding Reconciles across operators.

`reconciler.dev/shard=a`, `reconciler.dev/shard!=a`, `tier in (gold, silver)`, `tier notin (x)`,
`reconciler.dev/shard` (has the label), `!reconciler.dev/shard` (has not); requirements joined
by commas all hold. Pure: parsing and matching only; the operator turns it into Kopf's filters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Operator = Literal["=", "!=", "in", "notin", "exists", "!exists"]

_KEY = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9.]{0,251}[A-Za-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?"
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(([^()]*)\)$")
_EQUALITY = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_EXISTS = re.compile(rf"^(!?)\s*({_KEY})$")
_VALUE_ONLY = re.compile(rf"^{_VALUE}$")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, value: str | None) -> bool:
        """Does a label `key` with `value` (None: no such label) meet this requirement?"""
        match self.operator:
            case "=" | "in":
                return value is not None and value in self.values
            case "!=" | "notin":
                return value is None or value not in self.values  # as Kubernetes: absent matches
            case "exists":
                return value is not None
            case "!exists":
                return value is None


def parse_selector(text: str) -> tuple[Requirement, ...]:
    """Parse a selector; ValueError names the requirement that is not one."""
    terms = _split(text)
    if not terms:
        raise ValueError("an empty label selector; leave it unset to select every Reconcile")
    return tuple(_requirement(term) for term in terms)


def matches(requirements: tuple[Requirement, ...], labels: Mapping[str, str]) -> bool:
    return all(r.matches(labels.get(r.key)) for r in requirements)


def _split(text: str) -> list[str]:
    """Split on the commas between requirements, not those inside `in (a, b)`."""
    terms, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0 or depth > 1:
            raise ValueError(f"unbalanced parentheses in the label selector {text!r}")
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    terms.append(current.strip())
    if any(not term for term in terms) and text.strip():
        raise ValueError(f"an empty requirement in the label selector {text!r}")
    return [term for term in terms if term]


def _requirement(term: str) -> Requirement:
    if found := _SET.match(term):
        values = [v.strip() for v in found.group(3).split(",")]
        if not values or any(not v or not _VALUE_ONLY.match(v) for v in values):
            raise ValueError(f"label selector: {term!r} needs a list of label values in parentheses")
        operator: Operator = "in" if found.group(2) == "in" else "notin"
        return Requirement(found.group(1), operator, frozenset(values))
    if found := _EQUALITY.match(term):
        return Requirement(
            found.group(1), "!=" if found.group(2) == "!=" else "=", frozenset({found.group(3)})
        )
    if found := _EXISTS.match(term):
        return Requirement(found.group(2), "!exists" if found.group(1) else "exists")
    raise ValueError(
        f"label selector: {term!r} is not a requirement (key=value, key!=value, key in (a,b), "
        "key notin (a,b), key, !key)"
    )
