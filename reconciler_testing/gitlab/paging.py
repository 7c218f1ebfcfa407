"""Offset pagination as Gitlab::Pagination::OffsetHeaderBuilder writes it: X-* headers and Link.

Why apart: every list endpoint pages the same way, and the hostile "endless pages" mode lives here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from email.message import Message
from urllib.parse import quote, urlencode

from reconciler_testing.gitlab.api import Json, get_int
from reconciler_testing.harness import Response

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100


@dataclass
class Page:
    """The request's view of paging: its path and query (for the links) and where it was sent."""

    raw_path: str
    query_pairs: list[tuple[str, str]]
    headers: Message
    default_base: str
    """The server's own URL, for a request without a Host header."""
    endless: bool = False
    """Hostile: always announce a next page (`X-Next-Page`, `Link: rel="next"`)."""

    @property
    def base(self) -> str:
        host = self.headers.get("Host")
        return f"http://{host}" if host else self.default_base

    def respond(self, items: list[Json], params: Json) -> Response:
        page = get_int(params, "page") or 1
        per_page = get_int(params, "per_page") or DEFAULT_PER_PAGE
        page = max(page, 1)
        per_page = DEFAULT_PER_PAGE if per_page < 1 else min(per_page, MAX_PER_PAGE)
        total = len(items)
        total_pages = max(1, math.ceil(total / per_page))
        out_of_range = page > total_pages
        next_page = page + 1 if page < total_pages or self.endless else None
        prev_page = page - 1 if page > 1 and not out_of_range else None
        chunk = items[(page - 1) * per_page : page * per_page]
        links: list[str] = []
        if prev_page:
            links.append(f'<{self._href(prev_page, per_page)}>; rel="prev"')
        if next_page:
            links.append(f'<{self._href(next_page, per_page)}>; rel="next"')
        links.append(f'<{self._href(1, per_page)}>; rel="first"')
        links.append(f'<{self._href(total_pages, per_page)}>; rel="last"')
        headers = [
            ("X-Per-Page", str(per_page)),
            ("X-Page", str(page)),
            ("X-Next-Page", str(next_page or "")),
            ("X-Prev-Page", str(prev_page or "")),
            ("Link", ", ".join(links)),
            ("X-Total", str(total)),
            ("X-Total-Pages", str(total_pages)),
        ]
        return Response.json(chunk, headers=headers)

    def _href(self, page: int, per_page: int) -> str:
        pairs = [(k, v) for k, v in self.query_pairs if k not in ("page", "per_page", "private_token")]
        pairs += [("page", str(page)), ("per_page", str(per_page))]
        query = urlencode(sorted(pairs), quote_via=quote)
        return f"{self.base}{self.raw_path}?{query}"
