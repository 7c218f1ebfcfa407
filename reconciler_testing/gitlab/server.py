"""The GitLab fake as an HTTP server: request parsing, faults, throttling and the call log.

Why apart: the state, routes and paging modules say what GitLab answers; this one turns an HTTP
request into a call to them, with the hostile behaviours tests and benchmarks switch on.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from email.message import Message
from email.utils import formatdate
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from reconciler_testing import harness
from reconciler_testing.gitlab.api import (
    API_PREFIX,
    WRITE_METHODS,
    ApiError,
    Json,
    full_prefix,
    pairs_to_params,
    param_error,
)
from reconciler_testing.gitlab.paging import Page
from reconciler_testing.gitlab.routes import GitLabRoutes
from reconciler_testing.gitlab.state import User

# Rack::Attack answer text: Gitlab::Throttle::DEFAULT_RATE_LIMITING_RESPONSE_TEXT plus a newline.
_RATE_LIMIT_TEXT = b"Retry later\n"
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True)
class Call:
    """One request as the server saw it, so tests can assert on what the operator actually sent."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    body: dict[str, Any] = field(default_factory=dict)
    user: str | None = field(default=None, compare=False)
    """Username of the token's user (never the token): tells two Reconciles' writes apart."""
    token_id: int | None = field(default=None, compare=False)
    """The personal access token's id (as /personal_access_tokens/self gives it), never the token."""
    at: float = field(default=0.0, compare=False)
    """When the answer was ready (time.monotonic())."""


def _fault_response(fault: harness.Fault) -> harness.Response:
    if fault.raw is not None:
        return fault.raw_response()
    if fault.status == 429:
        reset = int(time.time()) + fault.retry_after
        headers = [
            ("Content-Type", "text/plain"),
            ("Retry-After", str(fault.retry_after)),
            ("RateLimit-Name", "throttle_authenticated_api"),
            ("RateLimit-Limit", "2000"),
            ("RateLimit-Observed", "2001"),
            ("RateLimit-Remaining", "0"),
            ("RateLimit-Reset", str(reset)),
            ("RateLimit-ResetTime", formatdate(reset, usegmt=True)),
        ]
        return harness.Response(429, _RATE_LIMIT_TEXT, headers)
    reason = _REASONS.get(fault.status, "Error")
    return harness.Response.json({"message": f"{fault.status} {reason}"}, status=fault.status)


class _GitLabHandler(harness.RequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""

    do_GET = harness.RequestHandler.dispatch
    do_HEAD = harness.RequestHandler.dispatch
    do_POST = harness.RequestHandler.dispatch
    do_PUT = harness.RequestHandler.dispatch
    do_PATCH = harness.RequestHandler.dispatch
    do_DELETE = harness.RequestHandler.dispatch


class GitLabTestServer(GitLabRoutes, harness.HTTPFake):
    """In-memory GitLab on 127.0.0.1 that the real python-gitlab client can talk to.

    State is changed through the helper methods (``add_user`` ...) or through the API itself, and
    read back with ``members()`` and the call log. Every state access holds one lock because the
    HTTP server answers each connection on its own thread.
    """

    handler_class = _GitLabHandler
    thread_name = "gitlab-test-server"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, latency: float = 0.0) -> None:
        GitLabRoutes.__init__(self)
        harness.HTTPFake.__init__(self, host, port, latency=latency)
        self._calls: harness.CallLog[Call] = harness.CallLog()
        self._faults = harness.FaultQueue()
        self._windows = harness.SlidingWindows()
        self.errors: list[str] = []
        """Tracebacks of handler crashes (answered as 500), so tests can fail loudly on server bugs."""
        self.drip_seconds = 0.0
        """Hostile: send each answer's body one byte at a time, this long apart (0: at once)."""
        self.endless_pages = False
        """Hostile: listings always announce a next page (`X-Next-Page`, `Link: rel="next"`)."""
        self.user_rate_limit: tuple[int, float] | None = None
        """(limit, window seconds): GitLab's throttle_authenticated_api, per user, a sliding window
        (GitLab's 2000 per minute, shortened for tests and benchmarks). None: no limit."""
        self.member_delete_limit: tuple[int, float] | None = None
        """(limit, window seconds): GitLab's Members API limit on removals, per group or project and
        user (60 a minute by default since GitLab 16.9), shortened alike. None: no limit."""
        self.rate_limited = 0
        """429 answers given by `user_rate_limit` and `member_delete_limit`."""

    @property
    def url(self) -> str:
        """Base URL for ``gitlab.Gitlab(url=...)`` (python-gitlab appends /api/v4 itself)."""
        return self.origin

    # ------------------------------------------------------------------ call log and faults

    @property
    def calls(self) -> list[Call]:
        """Every request so far, in arrival order (a copy)."""
        return self._calls.snapshot()

    def write_calls(self) -> list[Call]:
        """Successful writes only: what actually changed GitLab."""
        return self._calls.select(lambda c: c.method in WRITE_METHODS and 200 <= c.status < 300)

    def reset_calls(self) -> None:
        """Forget the log so a test can count only the calls of the step under test."""
        self._calls.clear()

    def calls_matching(self, method: str, path_prefix: str) -> int:
        """Count calls with this method whose path starts with the prefix ("/api/v4" is optional)."""
        prefix, verb = full_prefix(path_prefix), method.upper()
        return self._calls.count(lambda c: c.method == verb and c.path.startswith(prefix))

    def rate_limit(
        self, times: int, retry_after: int = 1, method: str | None = None, *, path_prefix: str | None = None
    ) -> None:
        """Answer the next ``times`` matching requests with GitLab's Rack::Attack 429."""
        self._add_fault(harness.Fault(times, 429, retry_after), method, path_prefix)

    def fail(
        self, times: int, status: int = 500, method: str | None = None, *, path_prefix: str | None = None
    ) -> None:
        """Answer the next ``times`` matching requests with a server error."""
        self._add_fault(harness.Fault(times, status), method, path_prefix)

    def answer_raw(
        self,
        times: int,
        body: bytes,
        *,
        status: int = 200,
        method: str | None = None,
        path_prefix: str | None = None,
        content_type: str = "text/html; charset=utf-8",
        truncated: bool = False,
    ) -> None:
        """Answer the next ``times`` matching requests with ``body`` as is: what a proxy in front of
        GitLab sends (an HTML page), or a body cut off mid-way (``truncated``)."""
        fault = harness.Fault(times, status, raw=body, content_type=content_type, truncated=truncated)
        self._add_fault(fault, method, path_prefix)

    def _add_fault(self, fault: harness.Fault, method: str | None, path_prefix: str | None) -> None:
        fault.method = method.upper() if method is not None else None
        fault.path_prefix = full_prefix(path_prefix) if path_prefix is not None else None
        self._faults.add(fault)

    def clear_faults(self) -> None:
        """Drop injected faults that were not used up."""
        self._faults.clear()

    # ------------------------------------------------------------------ request handling

    def respond(self, method: str, target: str, headers: Message, body: bytes) -> harness.Response:
        response = self.handle(method, target, headers, body)
        response.drip = self.drip_seconds
        return response

    def handle(self, method: str, target: str, headers: Message, body: bytes) -> harness.Response:
        """Answer one HTTP request (no latency, no drip); called from the handler threads."""
        split = urlsplit(target)
        raw_path = split.path
        query_pairs = parse_qsl(split.query, keep_blank_values=True)
        body_params: Json = {}
        try:
            body_params = self._parse_body(headers, body)
            response = self._route(method, raw_path, query_pairs, body_params, headers)
        except ApiError as err:
            response = harness.Response.json(err.body, err.status, err.headers)
        except Exception:
            with self._lock:
                self.errors.append(traceback.format_exc())
            response = harness.Response.json({"message": "500 Internal Server Error"}, status=500)
        with self._lock:
            found = self._find_token({**pairs_to_params(query_pairs), **body_params}, headers)
            user = self._users[found.user_id].username if found and found.user_id in self._users else None
        token_id = found.id if found else None
        call = Call(
            method,
            raw_path,
            dict(query_pairs),
            response.status,
            body_params,
            user,
            token_id,
            time.monotonic(),
        )
        self._calls.append(call)
        return response

    def _parse_body(self, headers: Message, body: bytes) -> Json:
        """GitLab (Grape) accepts JSON, form-encoded bodies and query strings alike."""
        if not body:
            return {}
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type == "application/json" or body.lstrip()[:1] in (b"{", b"["):
            try:
                parsed = json.loads(body)
            except ValueError as exc:
                raise param_error("The provided content-type 'application/json' is not supported.") from exc
            return cast(Json, parsed) if isinstance(parsed, dict) else {}
        return pairs_to_params(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))

    def _route(
        self, method: str, raw_path: str, query_pairs: list[tuple[str, str]], body: Json, headers: Message
    ) -> harness.Response:
        fault = self._faults.take(method, raw_path)
        if fault is not None:
            return _fault_response(fault)
        if not raw_path.startswith(API_PREFIX + "/"):
            raise ApiError(404, {"error": "404 Not Found"})
        parts = [unquote(p) for p in raw_path[len(API_PREFIX) + 1 :].split("/")]
        while parts and parts[-1] == "":
            parts.pop()
        verb = "GET" if method == "HEAD" else method
        handler, allowed = self._match(parts)
        if handler is None:
            raise ApiError(404, {"error": "404 Not Found"})
        if verb not in allowed:
            raise ApiError(405, {"error": "405 Not Allowed"}, [("Allow", ", ".join(sorted(allowed)))])
        params = pairs_to_params(query_pairs)
        params.update(body)
        with self._lock:
            user = self._authenticate(method, parts, params, headers)
            throttled = self._throttle(user) or self._throttle_removal(user, verb, parts)
            if throttled is not None:
                return throttled
            page = Page(raw_path, query_pairs, headers, self.url, self.endless_pages)
            return handler(verb, user, params, page)

    def _throttle_removal(self, user: User, verb: str, parts: list[str]) -> harness.Response | None:
        """`member_delete_limit`: DELETE /:kind/:id/members/:user_id, per group or project and user."""
        if self.member_delete_limit is None or verb != "DELETE" or len(parts) != 4 or parts[2] != "members":
            return None
        limit, window = self.member_delete_limit
        wait = self._windows.admit(("delete-member", user.id, parts[0], parts[1]), limit, window)
        if not wait:
            return None
        self.rate_limited += 1
        return _fault_response(harness.Fault(1, 429, wait))

    def _throttle(self, user: User) -> harness.Response | None:
        """`user_rate_limit`: a 429 with Retry-After once the user made `limit` calls in the window."""
        if self.user_rate_limit is None:
            return None
        limit, window = self.user_rate_limit
        wait = self._windows.admit(user.id, limit, window)
        if not wait:
            return None
        self.rate_limited += 1
        return _fault_response(harness.Fault(1, 429, wait))
