"""docs/operations.md's metrics table lists every metric the operator and the sidecar define, and
nothing they do not: the reference cannot fall behind the code."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry

import reconciler_operator.context
import reconciler_operator.observability
from reconciler_api import metrics as api_metrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def defined(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        if family.name.startswith("reconciler_"):
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def documented() -> set[str]:
    section = DOC.read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(reconciler_[a-z_]+)", section, flags=re.M))


def test_every_metric_is_documented_and_every_documented_one_exists() -> None:
    assert reconciler_operator.observability.RECONCILE_CONDITION is not None
    code = defined(REGISTRY) | defined(api_metrics.REGISTRY)
    assert code == documented()
