"""GitLab's REST conventions: error bodies, and Grape's coercion of query and form parameters.

Why apart: the routes, the paging and the state all answer errors the same GitLab way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any

Json = dict[str, Any]

API_PREFIX = "/api/v4"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
READ_METHODS = frozenset({"GET", "HEAD"})
_TRUE = frozenset({"true", "1", "t", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "f", "no", "n", "off"})


class ApiError(Exception):
    """Raised by handlers to answer with GitLab's error body instead of a result."""

    def __init__(self, status: int, body: Json, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers = list(headers)


def full_prefix(prefix: str) -> str:
    """Let callers write "/groups/1/members" as well as "/api/v4/groups/1/members"."""
    return prefix if prefix.startswith("/api/") else API_PREFIX + prefix


def message(status: int, text: object) -> ApiError:
    """GitLab's render_api_error!: ``{"message": ...}``."""
    return ApiError(status, {"message": text})


def not_found(resource: str | None = None) -> ApiError:
    """GitLab's not_found!(resource): ``{"message": "404 Group Not Found"}``."""
    return message(404, f"404 {resource} Not Found" if resource else "404 Not Found")


def record_not_found() -> ApiError:
    """ActiveRecord::RecordNotFound, e.g. an unknown member id: note the lower-case "found"."""
    return message(404, "404 Not found")


def param_error(text: str) -> ApiError:
    """Grape parameter validation failures answer ``{"error": ...}``, not ``{"message": ...}``."""
    return ApiError(400, {"error": text})


def pairs_to_params(pairs: list[tuple[str, str]]) -> Json:
    """Query/form pairs to params; ``a[]=1&a[]=2`` and repeated keys become lists."""
    params: Json = {}
    for key, value in pairs:
        if key.endswith("[]"):
            params.setdefault(key[:-2], []).append(value)
        elif key in params:
            existing = params[key]
            params[key] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            params[key] = value
    return params


def get_int(params: Json, name: str, *, required: bool = False) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise param_error(f"{name} is missing")
        return None
    if isinstance(value, bool):
        raise param_error(f"{name} is invalid")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise param_error(f"{name} is invalid")


def get_bool(params: Json, name: str) -> bool:
    value = params.get(name)
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise param_error(f"{name} is invalid")


def get_date(params: Json, name: str) -> date | None:
    """Grape DateTime coercion: empty means "no date"; "YYYY-MM-DD" or an ISO timestamp."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise param_error(f"{name} is invalid")
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError as exc:
        raise param_error(f"{name} is invalid") from exc


def parse_user_id(raw: str) -> int:
    if not raw.isdigit():
        raise param_error("user_id is invalid")
    return int(raw)


def user_ids_filter(params: Json) -> set[int] | None:
    raw = params.get("user_ids")
    if raw is None or raw == "":
        return None
    values: Iterator[Any] = iter(raw) if isinstance(raw, list) else iter(str(raw).split(","))
    ids: set[int] = set()
    for value in values:
        text = str(value).strip()
        if not text.isdigit():
            raise param_error("user_ids is invalid")
        ids.add(int(text))
    return ids
