"""Small helpers every integration's planner and client share (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from reconciler.errors import TransientError

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
