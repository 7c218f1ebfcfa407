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


def group_name(handle: str) -> str:
    """The Slack name `apply_group` gives a user group."""
    return f"Group {handle}"


def apply_group(
    kube: KubeApi,
    api_url: str,
    namespace: str,
    prefix: str,
    users: list[str],
    channels: list[str] | None = None,
    **spec: Any,
) -> tuple[str, str]:
    """Apply a Reconcile that manages one fresh user group; returns (Reconcile name, handle)."""
    name, handle = unique(prefix), unique(prefix)
    group: dict[str, Any] = {"handle": handle, "name": group_name(handle), "users": users}
    if channels is not None:
        group["channels"] = channels
    kube.create_reconcile(slack_reconcile(name, namespace, api_url, [group], **spec))
    return name, handle
