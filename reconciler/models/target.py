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


def normalize_base_url(url: str) -> str:
    """`HTTPS://GitLab.example.com:443/` -> `https://gitlab.example.com`: one key per instance."""
    parts = urlsplit(url.strip())
    scheme = (parts.scheme or "https").lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    default = {"https": 443, "http": 80}.get(scheme)
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"
