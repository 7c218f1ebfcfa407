"""Small helpers every integration's planner and client share (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from reconciler.errors import Forbidden, ReconcileError, TransientError, Unauthorized

T = TypeVar("T")

MAX_NAMES_IN_MESSAGE = 20
"""Error messages name at most this many users/channels/paths, then say how many more."""


def name_list(values: Iterable[str], *, sort: bool = True) -> str:
    """`a, b, c and 5 more`: names for a message a person reads, never unbounded."""
    names = sorted(values) if sort else list(values)
    shown = ", ".join(names[:MAX_NAMES_IN_MESSAGE])
    more = len(names) - MAX_NAMES_IN_MESSAGE
    return shown + (f" and {more} more" if more > 0 else "")


def parse_answer(adapter: TypeAdapter[T], data: Any, what: str) -> T:
    """Validate a service's answer: a malformed one is reported (and retried), never half-used."""
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise TransientError(
            "BadResponse", f"{what} answered in an unexpected shape: {exc.errors()[0]['msg']}"
        ) from None


MAX_SERVICE_TEXT = 200
"""The most of a service's own `error`/`message` text a message quotes."""


def service_text(value: object) -> str:
    """A documented error field of a service's answer, as one bounded line (never a raw body)."""
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_SERVICE_TEXT else text[: MAX_SERVICE_TEXT - 3] + "..."


def unreadable_answer(service: str, what: str, status: int) -> ReconcileError:
    """The one classification of an answer that is not the service's JSON (an HTML page from a proxy
    or load balancer, an empty or cut-off body), for every integration alike.

    401 and 403 are permanent: they are about the credentials, whoever answers. Everything else is
    transient (retried with backoff): a proxy's page or a cut-off body says nothing about the spec.
    No part of the body is quoted (it may be a page of HTML, or echo a token)."""
    if status == 401:
        return Unauthorized(f"{service} answered HTTP 401 to {what}; put a valid token in the Secret")
    if status == 403:
        return Forbidden(f"{service} answered HTTP 403 to {what}; check the token's permissions")
    if status >= 500:
        return TransientError(f"{service}Unavailable", f"{service} answered HTTP {status} to {what}")
    return TransientError(
        "BadResponse", f"{service} answered {what} with HTTP {status} and a body that is not its JSON"
    )
