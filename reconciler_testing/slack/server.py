"""The Slack fake as an HTTP server: request parsing, auth, faults, tiers and the call log.

Why apart: the state and methods modules say what Slack answers; this one turns an HTTP request
into a method call, with the hostile behaviours tests and benchmarks switch on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from reconciler_testing.harness import (
    CallLog,
    Fault,
    FaultQueue,
    HTTPFake,
    RequestHandler,
    Response,
    SlidingWindows,
)
from reconciler_testing.slack.methods import SlackMethods, require_scope
from reconciler_testing.slack.state import (
    JSON,
    TEAM_ID,
    TIER_2,
    TIERS,
    WRITE_METHODS,
    Params,
    SlackError,
)


@dataclass(frozen=True)
class Call:
    """One request as the server saw it, so tests can assert on traffic (token left out)."""

    method: str
    params: dict[str, str]
    status: int
    error: str | None
    user: str | None = field(default=None, compare=False)
    """The user id of the calling token (never the token): tells two Reconciles' writes apart."""
    token_id: int | None = field(default=None, compare=False)
    """Which registered token called (1 = the first added), never the token itself."""
    at: float = field(default=0.0, compare=False)
    """When the answer was ready (time.monotonic())."""


@dataclass
class _Reply:
    status: int
    body: JSON
    headers: dict[str, str] = field(default_factory=dict)
    raw: Fault | None = None


def _flatten_json(body: Mapping[str, Any]) -> Params:
    """Turn a JSON body into the same string params a form body gives, as Slack treats both alike."""
    params: Params = {}
    for key, value in body.items():
        if value is None:
            continue
        if isinstance(value, bool):
            params[key] = "true" if value else "false"
        elif isinstance(value, list | tuple):
            params[key] = ",".join(str(item) for item in value)
        elif isinstance(value, dict):
            params[key] = json.dumps(value)
        else:
            params[key] = str(value)
    return params


def _error_reply(err: SlackError) -> _Reply:
    """Slack reports method errors as HTTP 200 with ``ok: false``."""
    return _Reply(200, {"ok": False, "error": err.error, **err.extra})


def _fault_reply(fault: Fault) -> _Reply:
    """Injected faults: 429 + Retry-After (as documented for rate limits) or a bare 5xx."""
    if fault.raw is not None:
        return _Reply(fault.status, {}, raw=fault)
    if fault.status == 429:
        return _Reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(fault.retry_after)})
    return _Reply(fault.status, {"ok": False, "error": "internal_error"})


class _SlackHandler(RequestHandler):
    """Slack accepts GET and POST for every method, and keeps connections alive (HTTP/1.1)."""

    protocol_version = "HTTP/1.1"
    server_version = "SlackTestServer/1.0"
    do_GET = RequestHandler.dispatch
    do_POST = RequestHandler.dispatch


class SlackTestServer(SlackMethods, HTTPFake):
    """In-process fake Slack on 127.0.0.1 with state helpers, a call log and fault injection."""

    handler_class = _SlackHandler
    thread_name = "slack-test-server"

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0, team_id: str = TEAM_ID
    ) -> None:
        SlackMethods.__init__(self, team_id)
        HTTPFake.__init__(self, host, port, latency=latency)
        self.tier_window: float | None = None
        """When set, every method allows its tier's calls per this many seconds (sliding), else 429."""
        self.drip_seconds: float = 0.0
        """Hostile: send each answer's body one byte at a time, this long apart (0: at once)."""
        self.drip_methods: frozenset[str] | None = None
        """The methods whose answers drip (None: all)."""
        self._windows = SlidingWindows()
        self._faults = FaultQueue()
        self._calls: CallLog[Call] = CallLog()

    @property
    def api_url(self) -> str:
        """What goes into ``WebClient(base_url=...)``; the trailing slash matters for urljoin."""
        return f"{self.origin}/api/"

    # ------------------------------------------------------------------ call log and faults

    @property
    def calls(self) -> list[Call]:
        """A copy of every request seen, oldest first."""
        return self._calls.snapshot()

    def calls_to(self, method: str) -> int:
        """How many requests (any outcome) hit ``method``."""
        return self._calls.count(lambda c: c.method == method)

    def write_calls(self) -> list[Call]:
        """Successful user-group mutations: what a no-op reconcile must not produce."""
        return self._calls.select(lambda c: c.method in WRITE_METHODS and c.status == 200 and c.error is None)

    def reset_calls(self) -> None:
        """Forget the call log (state is kept)."""
        self._calls.clear()

    def rate_limited_calls(self) -> int:
        """How many requests were answered 429 (tiers or injected faults)."""
        return self._calls.count(lambda c: c.status == 429)

    def rate_limit(self, method: str | None, times: int, retry_after: int = 1) -> None:
        """Answer the next ``times`` calls to ``method`` (None = any) with 429 + ``Retry-After``."""
        self._faults.add(Fault(times, 429, retry_after, method))

    def fail(self, method: str | None, times: int, status: int = 500) -> None:
        """Answer the next ``times`` calls to ``method`` (None = any) with an HTTP 5xx."""
        if not 500 <= status <= 599 or times < 0:
            raise ValueError("status must be 5xx and times >= 0")
        self._faults.add(Fault(times, status, method=method))

    def clear_faults(self) -> None:
        """Drop injected faults that were not used up."""
        self._faults.clear()

    def answer_raw(
        self,
        method: str | None,
        times: int,
        body: bytes,
        *,
        status: int = 200,
        content_type: str = "text/html; charset=utf-8",
        truncated: bool = False,
    ) -> None:
        """Answer the next ``times`` calls to ``method`` with ``body`` as is: what a proxy or load
        balancer in front of Slack sends (an HTML page), or a body cut off mid-way (``truncated``)."""
        fault = Fault(times, status, method=method, raw=body, content_type=content_type, truncated=truncated)
        self._faults.add(fault)

    def enforce_tiers(self, window: float | None) -> None:
        """Enforce Slack's tiers over `window` seconds (60 is Slack's; tests shorten it); None: off."""
        self.tier_window = window
        self._windows.clear()

    def _over_tier(self, method: str) -> int:
        """Seconds until `method` has budget again (0: admitted now, and counted)."""
        if self.tier_window is None or method not in self._methods:
            return 0
        return self._windows.admit(method, TIERS.get(method, TIER_2), self.tier_window)

    # ------------------------------------------------------------------ request pipeline

    def respond(self, method: str, target: str, headers: Message, body: bytes) -> Response:
        parts = urlsplit(target)
        if not parts.path.startswith("/api/"):
            return self._to_response(_Reply(404, {"ok": False, "error": "not_found"}))
        name = parts.path[len("/api/") :]
        reply = self.handle(name, parts.query, {k.lower(): v for k, v in headers.items()}, body)
        response = self._to_response(reply)
        if reply.raw is None and (self.drip_methods is None or name in self.drip_methods):
            response.drip = self.drip_seconds
        return response

    @staticmethod
    def _to_response(reply: _Reply) -> Response:
        if reply.raw is not None:
            return reply.raw.raw_response()
        headers = list(reply.headers.items())
        return Response.json(
            reply.body, reply.status, headers, compact=False, content_type="application/json; charset=utf-8"
        )

    def handle(self, method: str, query: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        """Parse, authenticate, authorise and dispatch one Web API request (HTTP-independent)."""
        params: Params = {}
        try:
            params, token = self._parse(query, headers, body)
        except SlackError as err:
            return self._record(method, params, _error_reply(err))
        with self._lock:
            fault = self._faults.take(method, "/api/" + method)
            if fault is not None:
                return self._record(method, params, _fault_reply(fault), token)
            wait = self._over_tier(method)
            if wait:
                return self._record(method, params, _fault_reply(Fault(0, 429, wait, method)), token)
            try:
                payload = self._dispatch(method, token, params)
            except SlackError as err:
                return self._record(method, params, self._with_scopes(token, _error_reply(err)), token)
            except Exception as exc:  # a server bug must surface as a failed call, not a hang
                reply = _Reply(500, {"ok": False, "error": "fatal_error", "detail": repr(exc)})
                return self._record(method, params, reply, token)
            reply = self._with_scopes(token, _Reply(200, {"ok": True, **payload}))
            return self._record(method, params, reply, token)

    def _with_scopes(self, token: str | None, reply: _Reply) -> _Reply:
        """Slack answers every call made with a known token with its scopes in ``x-oauth-scopes``."""
        tok = self._tokens.get(token) if token else None
        if tok is not None:
            reply.headers["x-oauth-scopes"] = ",".join(sorted(tok.scopes))
        return reply

    def _record(self, method: str, params: Params, reply: _Reply, token: str | None = None) -> _Reply:
        error = None if reply.body.get("ok") else str(reply.body.get("error"))
        with self._lock:
            known = self._tokens.get(token) if token else None
        user, token_id = (known.user_id, known.id) if known else (None, None)
        self._calls.append(Call(method, dict(params), reply.status, error, user, token_id, time.monotonic()))
        return reply

    @staticmethod
    def _parse(query: str, headers: Mapping[str, str], body: bytes) -> tuple[Params, str | None]:
        """Merge query and body params; the token comes from ``Authorization: Bearer`` or a form field."""
        params: Params = dict(parse_qsl(query, keep_blank_values=True))
        form_token = params.pop("token", None)
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if body:
            if content_type == "application/x-www-form-urlencoded":
                try:
                    form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
                except (UnicodeDecodeError, ValueError) as exc:
                    raise SlackError("invalid_form_data") from exc
                form_token = form.pop("token", form_token)
                params.update(form)
            elif content_type == "application/json":
                # Slack ignores a token inside a JSON body: it must be in the Authorization header.
                try:
                    decoded = json.loads(body)
                except (UnicodeDecodeError, ValueError) as exc:
                    raise SlackError("invalid_json") from exc
                if not isinstance(decoded, dict):
                    raise SlackError("invalid_json")
                decoded.pop("token", None)
                params.update(_flatten_json(decoded))
            elif not content_type:
                raise SlackError("missing_post_type")
            else:
                raise SlackError("invalid_post_type")
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else form_token
        return params, token or None

    def _dispatch(self, method: str, token: str | None, params: Params) -> JSON:
        entry = self._methods.get(method)
        if entry is None:
            raise SlackError("unknown_method")
        if token is None:
            raise SlackError("not_authed")
        tok = self._tokens.get(token)
        if tok is None:
            raise SlackError("invalid_auth")
        owner = self._users.get(tok.user_id)
        if tok.inactive or (owner is not None and owner.deleted):
            raise SlackError("account_inactive")
        scope, handler = entry
        if scope is not None:
            require_scope(tok, scope)
        return handler(tok, params)
