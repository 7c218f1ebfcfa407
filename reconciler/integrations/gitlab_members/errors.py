"""GitLab's error answers as ReconcileErrors, with the condition reason the operator reports.

Only GitLab's documented `message`/`error` fields are ever quoted, never a raw (HTML, proxy) body,
and every message is scrubbed of the token as a last line of defence. (A 429 is the client's: it
knows how often it retried and what GitLab asked to wait.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import gitlab.exceptions

from reconciler.errors import Forbidden, MissingScope, PermanentError, ReconcileError, TransientError
from reconciler.integrations.common import service_text, unreadable_answer


def translate(
    what: str, exc: gitlab.exceptions.GitlabHttpError, *, member_gone: bool, secret: str
) -> ReconcileError:
    """The error GitLab's answer `exc` to `what` ends the run with (any status but 429).
    `member_gone`: a 404 means the member is no longer there (the next run re-plans)."""
    status = exc.response_code or 0
    parsed = _parse(exc.response_body)
    body = parsed if isinstance(parsed, dict) else {}
    # Only GitLab's documented `message`/`error` fields, never a raw (HTML, proxy) body.
    message = scrub(_describe(body, f"HTTP {status}"), secret)
    if status >= 500 or parsed is _NOT_JSON:
        return unreadable_answer("GitLab", what, status)
    if status == 403:
        if body.get("error") == "insufficient_scope":
            return MissingScope(f"the token lacks the api scope needed to {what} (GitLab: {message})")
        return Forbidden(f"GitLab refused to {what}: {message}")
    if status == 404:
        if "group not found" in message.lower() or "project not found" in message.lower():
            return PermanentError("NotFound", f"cannot {what}: GitLab answered {message}")
        if member_gone:
            return TransientError("MemberGone", f"cannot {what}: not a member now; the next run re-plans")
        if "user not found" in message.lower():
            return TransientError("UserGone", f"cannot {what}: the user is gone; the next run re-plans")
        return PermanentError("NotFound", f"cannot {what}: GitLab answered {message}")
    if status == 409:
        return PermanentError("Conflict", f"GitLab refused to {what}: {message}")
    if status == 400:
        return PermanentError("InvalidSpec", f"GitLab refused to {what}: {message}")
    return PermanentError("GitLabError", f"GitLab answered HTTP {status} to {what}: {message}")


def scrub(text: str, secret: str) -> str:
    return text.replace(secret, "[token]") if secret else text


_NOT_JSON = object()
"""What `_parse` returns for a body that is not JSON (an HTML error page, a proxy's answer)."""


def _parse(raw: bytes | None) -> Any:
    """The body as JSON (any type), else `_NOT_JSON`: parsed once for both questions asked of it."""
    try:
        return json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError):
        return _NOT_JSON


def _describe(body: Mapping[str, Any], fallback: object) -> str:
    """GitLab's error body as one line: `{"message": {"access_level": ["should be ..."]}}` ->
    `access_level should be ...`; OAuth errors as `error: error_description`."""
    message = body.get("message", body.get("error", fallback))
    if isinstance(message, Mapping):
        parts = [
            f"{field} {text}"
            for field, texts in message.items()
            for text in (texts if isinstance(texts, list) else [texts])
        ]
        return service_text("; ".join(parts))
    text = str(message)
    if "error_description" in body:
        text = f"{text}: {body['error_description']}"
    return service_text(text)
