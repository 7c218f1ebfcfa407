"""Slack's error answers as ReconcileErrors, with the condition reason the operator reports.

Only Slack's documented `error` code (and `needed`, for a missing scope) is ever quoted: never a raw
body, which may be a proxy's HTML page or echo a token.
"""

from __future__ import annotations

import re

from slack_sdk.web import SlackResponse

from reconciler.errors import (
    Forbidden,
    MissingScope,
    PermanentError,
    RateLimited,
    ReconcileError,
    TransientError,
    Unauthorized,
)
from reconciler.integrations.common import service_text, unreadable_answer
from reconciler.integrations.transport import retry_after_seconds

SLACK_ERROR_CODE = re.compile(r"[a-z0-9_.]{1,80}")
"""Slack's documented `error` field: a short snake_case code such as `invalid_auth`."""
_NOT_JSON = "Received a response in a non-JSON format"
"""How slack-sdk reports an answer that is not JSON (it puts it where Slack's `error` code goes)."""
AUTH_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}


def translate(method: str, response: SlackResponse) -> ReconcileError:
    """The error a failed call of `method` (slack-sdk's SlackApiError answer) ends the run with."""
    status = response.status_code
    data = response.data if isinstance(response.data, dict) else {}
    error = str(data.get("error", ""))
    if status != 429 and (not isinstance(response.data, dict) or error.startswith(_NOT_JSON)):
        return unreadable_answer("Slack", method, status)
    if not SLACK_ERROR_CODE.fullmatch(error):
        # Not a Slack error code: slack-sdk puts the start of a non-JSON body here. Never quote it.
        error = f"HTTP {status}, not a Slack API answer" if error else f"HTTP {status}"
    if status == 429 or error == "ratelimited":
        retry_after = retry_after_seconds(response.headers)
        wait = f"{retry_after:.0f}s" if retry_after is not None else "a while"
        return RateLimited(
            f"Slack {method} is rate limited: Slack asked to wait {wait}; the run gave its worker back",
            retry_after=retry_after,
        )
    if status >= 500:
        return TransientError("SlackUnavailable", f"Slack {method} answered HTTP {status}")
    if error in AUTH_ERRORS:
        return Unauthorized(f"Slack rejected the token ({error}); put a valid bot token in the Secret")
    if error == "missing_scope":
        needed = service_text(data.get("needed", "unknown"))
        return MissingScope(
            f"the Slack token lacks the scope {needed} (needed by {method}); add it to the app"
        )
    if error in {"not_allowed_token_type", "no_permission", "permission_denied", "paid_teams_only"}:
        return Forbidden(f"Slack refused {method}: {error}")
    if error in {"name_already_exists", "handle_already_exists"}:
        return PermanentError("Conflict", f"Slack refused {method}: {error}")
    return PermanentError("SlackError", f"Slack {method} failed: {error}")


def header(response: SlackResponse, name: str) -> str | None:
    """The answer's header `name` (lower case), case-insensitively; its first value if repeated."""
    for key, value in (response.headers or {}).items():
        if key.lower() == name:
            return str(value[0] if isinstance(value, list) else value)
    return None
