"""Small builders shared by the end-to-end tests."""

from __future__ import annotations

import itertools
from typing import Any

from tests.builders import gitlab_reconcile, slack_reconcile
from tests.kube import KubeApi, condition

__all__ = ["gitlab_reconcile", "slack_reconcile"]

_counter = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


def is_ready(obj: dict[str, Any]) -> bool:
    ready = condition(obj, "Ready")
    return ready.get("status") == "True" and ready.get("observedGeneration") == obj["metadata"]["generation"]


def is_stalled(obj: dict[str, Any]) -> bool:
    return condition(obj, "Stalled").get("status") == "True"


def wait_ready(kube: KubeApi, namespace: str, name: str, timeout: float = 30) -> dict[str, Any]:
    return kube.wait_for(namespace, name, is_ready, timeout, "Ready=True")


def wait_task_change(
    kube: KubeApi, namespace: str, name: str, old_task: str | None, timeout: float = 30
) -> dict[str, Any]:
    return kube.wait_for(
        namespace,
        name,
        lambda o: (
            (o.get("status") or {}).get("taskId") not in (None, old_task)
            and condition(o, "Reconciling").get("status") == "False"
        ),
        timeout,
        "a new finished task",
    )
