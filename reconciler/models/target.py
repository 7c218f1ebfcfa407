"""What a Reconcile writes to, named so that two Reconciles naming the same thing get the same key."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Target:
    """One external thing a Reconcile writes to.

    `key` identifies it across Reconciles (`slack:T0123:usergroup:oncall`); `name` is how the spec
    names it (`oncall`, `group:acme/platform`), so a service can leave it out of its plan.
    """

    key: str
    name: str
    label: str
    """What a person reads: `Slack user group @oncall (workspace T0123)`."""


def slack_usergroup_target(team_id: str, handle: str) -> Target:
    return Target(
        key=f"slack:{team_id}:usergroup:{handle.lower()}",
        name=handle,
        label=f"Slack user group @{handle} (workspace {team_id})",
    )


def gitlab_target(url: str, kind: str, path: str) -> Target:
    """GitLab paths are case-insensitive and one instance has many spellings of its URL."""
    return Target(
        key=f"gitlab:{normalize_base_url(url)}:{kind}:{path.strip('/').casefold()}",
        name=f"{kind}:{path}",
        label=f"GitLab {kind} {path} ({normalize_base_url(url)})",
    )


def normalize_base_url(url: str) -> str:
    """`HTTPS://GitLab.example.com:443/` -> `https://gitlab.example.com`: one key per instance."""
    parts = urlsplit(url.strip())
    scheme = (parts.scheme or "https").lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    default = {"https": 443, "http": 80}.get(scheme)
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"
