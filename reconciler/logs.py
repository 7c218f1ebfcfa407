"""Logging set-up with a redaction filter: tokens never reach a log line, whatever logged them."""

from __future__ import annotations

import base64
import logging
import re
import threading

_TOKEN_PATTERNS = re.compile(
    r"(xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+|glpat-[A-Za-z0-9_-]+|Bearer\s+\S+)"
)
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
    return _TOKEN_PATTERNS.sub("***", text)


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


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Its DEBUG output dumps whole response bodies, Secrets included: never useful, never safe.
    logging.getLogger("kubernetes.client.rest").setLevel(logging.INFO)
