"""Small builders shared by the end-to-end tests."""

from __future__ import annotations

import itertools
from typing import Any

from tests.kube import KubeApi, condition

_counter = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


def slack_reconcile(
    name: str,
    namespace: str,
    api_url: str,
    usergroups: list[dict[str, Any]],
    secret: str = "slack-bot",  # noqa: S107 - a Secret name
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "reconciler.dev/v1alpha1",
        "kind": "Reconcile",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "integration": "slack-usergroups",
            "credentials": {"secretRef": {"name": secret}},
            "slackUsergroups": {"apiUrl": api_url, "usergroups": usergroups},
            **spec,
        },
    }


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


def gitlab_reconcile(
    name: str,
    namespace: str,
    url: str,
    groups: list[dict[str, Any]],
    projects: list[dict[str, Any]] | None = None,
    secret: str = "gitlab-bot",  # noqa: S107
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "reconciler.dev/v1alpha1",
        "kind": "Reconcile",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "integration": "gitlab-members",
            "credentials": {"secretRef": {"name": secret}},
            "gitlabMembers": {"url": url, "groups": groups, "projects": projects or []},
            **spec,
        },
    }
