"""Slack's cursor pagination: opaque cursors, `limit` handling, `response_metadata.next_cursor`.

Why apart: users.list and conversations.list page alike, and the hostile "endless pages" mode
lives here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from reconciler_testing.slack.state import DEFAULT_PAGE_LIMIT, JSON, Params, SlackError


def encode_cursor(kind: str, next_id: str) -> str:
    """Opaque cursor shaped like Slack's (base64 of ``kind:id``)."""
    return base64.b64encode(f"{kind}:{next_id}".encode()).decode()


def paginate(
    items: Sequence[JSON], kind: str, params: Params, *, cap: int, endless: bool = False
) -> tuple[list[JSON], str]:
    """Slice by cursor and limit; never more than `cap` items, like a busy Slack.

    `endless` (hostile): the last page points back to the first, so the listing never ends.
    """
    raw_limit = params.get("limit", "").strip()
    try:
        limit = int(raw_limit) if raw_limit else 0
    except ValueError as exc:
        raise SlackError("invalid_limit") from exc
    if limit < 0:
        raise SlackError("invalid_limit")
    if limit == 0:
        # users.list: "no limit" asks for everything; conversations.list documents a default of 100.
        limit = cap if kind == "user" else DEFAULT_PAGE_LIMIT
    limit = max(1, min(limit, cap))
    start = 0
    cursor = params.get("cursor", "")
    if cursor:
        try:
            cursor_kind, _, next_id = base64.b64decode(cursor, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise SlackError("invalid_cursor") from exc
        ids = [item["id"] for item in items]
        if cursor_kind != kind or next_id not in ids:
            raise SlackError("invalid_cursor")
        start = ids.index(next_id)
    page = list(items[start : start + limit])
    end = start + limit
    next_cursor = encode_cursor(kind, items[end]["id"]) if end < len(items) else ""
    if endless and items and not next_cursor:
        next_cursor = encode_cursor(kind, items[0]["id"])  # back to the start, forever
    return page, next_cursor
