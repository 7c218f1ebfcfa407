"""Reconcile manifests for tests (e2e, CLI, benchmarks): the shape comes from `Integration.manifest`."""

from __future__ import annotations

from typing import Any

from reconciler.integrations.registry import INTEGRATIONS


def slack_reconcile(
    name: str,
    namespace: str,
    api_url: str,
    usergroups: list[dict[str, Any]],
    secret: str = "slack-bot",  # noqa: S107 - a Secret name
    **spec: Any,
) -> dict[str, Any]:
    block = {"apiUrl": api_url, "usergroups": usergroups}
    return INTEGRATIONS["slack-usergroups"].manifest(name, namespace, block, secret, **spec)


def gitlab_reconcile(
    name: str,
    namespace: str,
    url: str,
    groups: list[dict[str, Any]],
    projects: list[dict[str, Any]] | None = None,
    secret: str = "gitlab-bot",  # noqa: S107
    **spec: Any,
) -> dict[str, Any]:
    block = {"url": url, "groups": groups, "projects": projects or []}
    return INTEGRATIONS["gitlab-members"].manifest(name, namespace, block, secret, **spec)
