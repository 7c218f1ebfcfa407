"""Logging set-up with a redaction filter: tokens never reach a log line, whatever logged them."""

from __future__ import annotations

import base64
import functools
import logging
import re
import sys
import threading
from typing import TextIO

BEARER_PATTERN = r"Bearer\s+\S+"


@functools.cache
def _token_patterns() -> re.Pattern[str]:
    """`Bearer ...` and every registered integration's token formats (`Integration.token_patterns`);
    built on first use, since the registry imports the integrations, which log."""
    from reconciler.integrations.registry import INTEGRATIONS

    patterns = [p for integration in INTEGRATIONS.values() for p in integration.token_patterns]
    return re.compile("|".join(f"(?:{p})" for p in [*patterns, BEARER_PATTERN]))


_known: set[str] = set()
_known_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Remember a secret value (a token read from a Secret) so it is masked wherever it shows up,
    also in the base64 form a Secret's `data` carries."""
    if len(value) >= 6:
        encoded = base64.b64encode(value.encode()).decode()
        with _known_lock:
            _known.update({value, encoded, encoded.rstrip("=")})


def redact(text: str) -> str:
    with _known_lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, "***")
    return _token_patterns().sub("***", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to `sys.stderr` as it is when a record comes, not as it was at set-up: a command run
    in-process (a test runner, an embedding tool) swaps stderr and closes its copy afterwards, and a
    handler holding that copy fails on every later record ("--- Logging error ---")."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        """`setStream` and the base __init__ set it; there is nothing to keep."""


def setup_logging(level: str) -> None:
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Its DEBUG output dumps whole response bodies, Secrets included: never useful, never safe.
    logging.getLogger("kubernetes.client.rest").setLevel(logging.INFO)
