"""Reconcile manifests for tests (e2e, CLI, benchmarks): one place that knows the CR's shape."""

from __future__ import annotations

from typing import Any


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
