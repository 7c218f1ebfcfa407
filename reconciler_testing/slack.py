"""A local Slack Web API server for tests, written from Slack's method documentation.

The real ``slack_sdk.WebClient`` is pointed at it with ``base_url=server.api_url``, so tests exercise the
SDK's real HTTP, retry and pagination code instead of monkeypatched stubs. Only the methods the reconciler
uses are implemented; request parsing, auth, scope checks, error codes and response shapes follow Slack's
published reference (docs.slack.dev / api.slack.com method pages):

* errors are HTTP 200 ``{"ok": false, "error": ...}``; rate limiting is HTTP 429 with ``Retry-After``;
* ``missing_scope`` carries ``needed`` and ``provided``;
* cursor pagination returns ``response_metadata.next_cursor`` (empty string on the last page);
* ``usergroups.create`` -> ``name_already_exists`` / ``handle_already_exists`` / ``invalid_channel_provided``;
* ``usergroups.users.update`` -> ``no_users_provided`` for an empty list, ``invalid_users`` for unknown or
  deactivated ids, ``invalid_user`` for bots (guests and bots may not be members);
* ``users.lookupByEmail`` -> ``users_not_found``, also for deactivated users.

Run standalone (for benchmarks):
``python -m reconciler_testing.slack --port 0 --latency 0.05 --seed-file s.json``;
the first line printed on stdout is the ``api_url``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

__all__ = ["DEFAULT_SCOPES", "WRITE_METHODS", "Call", "SlackTestServer"]

JSON = dict[str, Any]
Params = dict[str, str]

DEFAULT_SCOPES: frozenset[str] = frozenset(
    {"users:read", "users:read.email", "channels:read", "groups:read", "usergroups:read", "usergroups:write"}
)
WRITE_METHODS: frozenset[str] = frozenset(
    {
        "usergroups.create",
        "usergroups.update",
        "usergroups.users.update",
        "usergroups.enable",
        "usergroups.disable",
    }
)
TEAM_ID = "T0001"
TIER_2 = 20
TIERS: dict[str, int] = {"auth.test": 100, "users.lookupByEmail": 50, "conversations.info": 50}
"""Documented per-method tiers (calls a minute per app and workspace): auth.test is special
(Tier 4-like), users.lookupByEmail and conversations.info Tier 3; usergroups.*, users.list and
conversations.list Tier 2."""
TEAM_NAME = "Reconciler Test"
DEFAULT_PAGE_LIMIT = 100
_CONVERSATION_TYPE_SCOPES = {
    "public_channel": "channels:read",
    "private_channel": "groups:read",
    "mpim": "mpim:read",
    "im": "im:read",
}


@dataclass(frozen=True)
class Call:
    """One request as the server saw it, so tests can assert on traffic (token left out)."""

    method: str
    params: dict[str, str]
    status: int
    error: str | None
    user: str | None = field(default=None, compare=False)
    """The user id of the calling token (never the token): tells two Reconciles' writes apart."""


class _SlackError(Exception):
    """An ``ok: false`` answer; ``extra`` adds fields such as ``needed``/``provided``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass
class _Token:
    token: str
    scopes: frozenset[str]
    inactive: bool
    user_id: str


@dataclass
class _User:
    id: str
    email: str
    name: str
    real_name: str
    deleted: bool
    is_bot: bool


@dataclass
class _Channel:
    id: str
    name: str
    is_private: bool
    is_archived: bool
    created: int


@dataclass
class _Usergroup:
    id: str
    name: str
    handle: str
    description: str
    users: list[str]
    channels: list[str]
    date_create: int
    date_update: int
    date_delete: int
    created_by: str
    updated_by: str
    deleted_by: str | None = None


@dataclass
class _Fault:
    method: str | None
    remaining: int
    status: int
    retry_after: int = 0
    raw: bytes | None = None
    """Answer these bytes as they are (an HTML error page, a cut-off body) instead of JSON."""
    content_type: str = "text/html; charset=utf-8"
    truncated: bool = False
    """Declare a Content-Length longer than `raw` and close the connection early."""


@dataclass
class _Reply:
    status: int
    body: JSON
    headers: dict[str, str] = field(default_factory=dict)
    raw: _Fault | None = None


_Handler = Callable[[_Token, Params], JSON]


def _truthy(value: str | None) -> bool:
    """Slack booleans arrive as "true"/"1" (slack_sdk sends "1"/"0")."""
    return value is not None and value.strip().lower() in {"1", "true"}


def _csv(value: str | None) -> list[str]:
    """Array arguments are comma separated strings (JSON arrays are joined before this)."""
    if value is None:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


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


def _error_reply(err: _SlackError) -> _Reply:
    """Slack reports method errors as HTTP 200 with ``ok: false``."""
    return _Reply(200, {"ok": False, "error": err.error, **err.extra})


def _fault_reply(fault: _Fault) -> _Reply:
    """Injected faults: 429 + Retry-After (as documented for rate limits) or a bare 5xx."""
    if fault.raw is not None:
        return _Reply(fault.status, {}, raw=fault)
    if fault.status == 429:
        return _Reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(fault.retry_after)})
    return _Reply(fault.status, {"ok": False, "error": "internal_error"})


def _encode_cursor(kind: str, next_id: str) -> str:
    """Opaque cursor shaped like Slack's (base64 of ``kind:id``)."""
    return base64.b64encode(f"{kind}:{next_id}".encode()).decode()


class SlackTestServer:
    """In-process fake Slack on 127.0.0.1 with state helpers, a call log and fault injection."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0, team_id: str = TEAM_ID
    ) -> None:
        self.host = host
        self.team_id = team_id
        self.tier_window: float | None = None
        """When set, every method allows its tier's calls per this many seconds (sliding), else 429."""
        self._admitted: dict[str, list[float]] = {}
        self._requested_port = port
        self.latency: float = latency
        self.page_limit_cap: int = 200
        self.drip_seconds: float = 0.0
        """Hostile: send each answer's body one byte at a time, this long apart (0: at once)."""
        self.drip_methods: frozenset[str] | None = None
        """The methods whose answers drip (None: all)."""
        self.endless_pages: bool = False
        """Hostile: list methods always announce a next page (`next_cursor` never empty)."""
        self._lock = threading.RLock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tokens: dict[str, _Token] = {}
        self._users: dict[str, _User] = {}
        self._channels: dict[str, _Channel] = {}
        self._groups: dict[str, _Usergroup] = {}
        self._faults: list[_Fault] = []
        self._calls: list[Call] = []
        self._counters: dict[str, int] = {}
        self._last_ts = 0
        self._methods: dict[str, tuple[str | None, _Handler]] = {
            "auth.test": (None, self._auth_test),
            "users.list": ("users:read", self._users_list),
            "users.lookupByEmail": ("users:read.email", self._users_lookup_by_email),
            "conversations.list": (None, self._conversations_list),  # scope depends on `types`
            "usergroups.list": ("usergroups:read", self._usergroups_list),
            "usergroups.users.list": ("usergroups:read", self._usergroups_users_list),
            "usergroups.create": ("usergroups:write", self._usergroups_create),
            "usergroups.update": ("usergroups:write", self._usergroups_update),
            "usergroups.users.update": ("usergroups:write", self._usergroups_users_update),
            "usergroups.enable": ("usergroups:write", self._usergroups_enable),
            "usergroups.disable": ("usergroups:write", self._usergroups_disable),
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SlackTestServer:
        """Bind and serve in a daemon thread; returns self so ``SlackTestServer().start()`` chains."""
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self.host, self._requested_port), _RequestHandler)
        httpd.slack = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="slack-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        httpd, thread = self._httpd, self._thread
        self._httpd, self._thread = None, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> SlackTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (only known after ``start()`` when port 0 was asked for)."""
        if self._httpd is None:
            raise RuntimeError("SlackTestServer is not running")
        return int(self._httpd.server_address[1])

    @property
    def api_url(self) -> str:
        """What goes into ``WebClient(base_url=...)``; the trailing slash matters for urljoin."""
        return f"http://{self.host}:{self.port}/api/"

    # ------------------------------------------------------------------ state helpers

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            n = self._counters.get(prefix, 0) + 1
            self._counters[prefix] = n
            return f"{prefix}{n:04d}"

    def _now(self) -> int:
        """Strictly increasing epoch seconds so every mutation visibly moves ``date_update``."""
        with self._lock:
            self._last_ts = max(int(time.time()), self._last_ts + 1)
            return self._last_ts

    def add_token(
        self,
        token: str,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        *,
        inactive: bool = False,
        user_id: str | None = None,
    ) -> None:
        """Register a token; ``user_id`` defaults to a bot-ish id that is not listed by users.list."""
        with self._lock:
            owner = user_id if user_id is not None else self._next_id("UBOT")
            self._tokens[token] = _Token(token, frozenset(scopes), inactive, owner)

    def add_user(
        self, email: str, *, name: str | None = None, deleted: bool = False, is_bot: bool = False
    ) -> str:
        """Add a workspace member and return its ``U....`` id."""
        with self._lock:
            user_id = self._next_id("U")
            handle = name if name is not None else email.split("@", 1)[0]
            self._users[user_id] = _User(user_id, email, handle, handle, deleted, is_bot)
            return user_id

    def add_channel(self, name: str, *, is_private: bool = False, is_archived: bool = False) -> str:
        """Add a channel and return its ``C....`` id."""
        with self._lock:
            channel_id = self._next_id("C")
            self._channels[channel_id] = _Channel(channel_id, name, is_private, is_archived, self._now())
            return channel_id

    def add_usergroup(
        self,
        handle: str,
        *,
        name: str,
        description: str = "",
        users: Iterable[str] = (),
        channels: Iterable[str] = (),
        disabled: bool = False,
    ) -> str:
        """Seed a user group directly (no API call logged) and return its ``S....`` id."""
        with self._lock:
            members, chans = list(dict.fromkeys(users)), list(dict.fromkeys(channels))
            unknown = [u for u in members if u not in self._users] + [
                c for c in chans if c not in self._channels
            ]
            if unknown:
                raise ValueError(f"unknown ids: {unknown}")
            if any(g.handle.casefold() == handle.casefold() for g in self._groups.values()):
                raise ValueError(f"handle already used: {handle}")
            if any(g.name.casefold() == name.casefold() for g in self._groups.values()):
                raise ValueError(f"name already used: {name}")
            now = self._now()
            group_id = self._next_id("S")
            self._groups[group_id] = _Usergroup(
                id=group_id,
                name=name,
                handle=handle,
                description=description,
                users=members,
                channels=chans,
                date_create=now,
                date_update=now,
                date_delete=now if disabled else 0,
                created_by="USLACKBOT",
                updated_by="USLACKBOT",
                deleted_by="USLACKBOT" if disabled else None,
            )
            return group_id

    def usergroup(self, handle: str) -> JSON:
        """The group's current Slack JSON (with ``users`` and ``user_count``); KeyError if absent."""
        with self._lock:
            for group in self._groups.values():
                if group.handle == handle:
                    return self._group_json(group, include_users=True, include_count=True)
        raise KeyError(handle)

    def usergroups(self) -> list[JSON]:
        """Every group, disabled ones included, in creation order."""
        with self._lock:
            return [
                self._group_json(g, include_users=True, include_count=True) for g in self._groups.values()
            ]

    def load_seed(self, seed: Mapping[str, Any]) -> None:
        """Load ``{"tokens", "users", "channels", "usergroups"}``; group members may be ids or emails."""
        for tok in seed.get("tokens", []):
            if isinstance(tok, str):
                self.add_token(tok)
            else:
                self.add_token(
                    tok["token"],
                    tok.get("scopes", DEFAULT_SCOPES),
                    inactive=bool(tok.get("inactive", False)),
                    user_id=tok.get("user_id"),
                )
        for user in seed.get("users", []):
            if isinstance(user, str):
                self.add_user(user)
            else:
                self.add_user(
                    user["email"],
                    name=user.get("name"),
                    deleted=bool(user.get("deleted", False)),
                    is_bot=bool(user.get("is_bot", False)),
                )
        for chan in seed.get("channels", []):
            if isinstance(chan, str):
                self.add_channel(chan)
            else:
                self.add_channel(
                    chan["name"],
                    is_private=bool(chan.get("is_private", False)),
                    is_archived=bool(chan.get("is_archived", False)),
                )
        with self._lock:
            by_email = {u.email.casefold(): u.id for u in self._users.values()}
            by_channel = {c.name: c.id for c in self._channels.values()}
        for group in seed.get("usergroups", []):
            self.add_usergroup(
                group["handle"],
                name=group["name"],
                description=group.get("description", ""),
                users=[by_email.get(u.casefold(), u) for u in group.get("users", [])],
                channels=[by_channel.get(c.lstrip("#"), c) for c in group.get("channels", [])],
                disabled=bool(group.get("disabled", False)),
            )

    # ------------------------------------------------------------------ call log and faults

    @property
    def calls(self) -> list[Call]:
        """A copy of every request seen, oldest first."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> int:
        """How many requests (any outcome) hit ``method``."""
        with self._lock:
            return sum(1 for c in self._calls if c.method == method)

    def write_calls(self) -> list[Call]:
        """Successful user-group mutations: what a no-op reconcile must not produce."""
        with self._lock:
            return [
                c for c in self._calls if c.method in WRITE_METHODS and c.status == 200 and c.error is None
            ]

    def reset_calls(self) -> None:
        """Forget the call log (state is kept)."""
        with self._lock:
            self._calls.clear()

    def rate_limit(self, method: str | None, times: int, retry_after: int = 1) -> None:
        """Answer the next ``times`` calls to ``method`` (None = any) with 429 + ``Retry-After``."""
        if times < 0 or retry_after < 0:
            raise ValueError("times and retry_after must be >= 0")
        with self._lock:
            self._faults.append(_Fault(method, times, 429, retry_after))

    def fail(self, method: str | None, times: int, status: int = 500) -> None:
        """Answer the next ``times`` calls to ``method`` (None = any) with an HTTP 5xx."""
        if not 500 <= status <= 599 or times < 0:
            raise ValueError("status must be 5xx and times >= 0")
        with self._lock:
            self._faults.append(_Fault(method, times, status))

    def clear_faults(self) -> None:
        """Drop injected faults that were not used up."""
        with self._lock:
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
        with self._lock:
            self._faults.append(_Fault(method, times, status, 0, body, content_type, truncated))
    def enforce_tiers(self, window: float | None) -> None:
        """Enforce Slack's tiers over `window` seconds (60 is Slack's; tests shorten it); None: off."""
        with self._lock:
            self.tier_window = window
            self._admitted.clear()

    def rate_limited_calls(self) -> int:
        """How many requests were answered 429 (tiers or injected faults)."""
        with self._lock:
            return sum(1 for c in self._calls if c.status == 429)

    def deactivate_user(self, email: str) -> None:
        """Deactivate a member (as an admin does): lookups stop finding it, updates refuse it."""
        with self._lock:
            for user in self._users.values():
                if user.email.casefold() == email.casefold():
                    user.deleted = True
                    return
        raise KeyError(email)

    def rename_channel(self, old: str, new: str) -> None:
        with self._lock:
            for chan in self._channels.values():
                if chan.name == old:
                    chan.name = new
                    return
        raise KeyError(old)

    def _over_tier(self, method: str) -> int:
        """Seconds until `method` has budget again (0: admitted now, and counted)."""
        if self.tier_window is None or method not in self._methods:
            return 0
        now = time.monotonic()
        admitted = [t for t in self._admitted.get(method, []) if t > now - self.tier_window]
        self._admitted[method] = admitted
        if len(admitted) >= TIERS.get(method, TIER_2):
            return max(1, int(admitted[0] + self.tier_window - now + 0.999))
        admitted.append(now)
        return 0

    def _take_fault(self, method: str) -> _Fault | None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.method in (None, method):
                fault.remaining -= 1
                return fault
        return None

    # ------------------------------------------------------------------ request pipeline

    def handle(self, method: str, query: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        """Parse, authenticate, authorise and dispatch one Web API request (HTTP-independent)."""
        if self.latency > 0:
            time.sleep(self.latency)
        params: Params = {}
        try:
            params, token = self._parse(query, headers, body)
        except _SlackError as err:
            return self._record(method, params, _error_reply(err))
        with self._lock:
            fault = self._take_fault(method)
            if fault is not None:
                return self._record(method, params, _fault_reply(fault), token)
            wait = self._over_tier(method)
            if wait:
                return self._record(method, params, _fault_reply(_Fault(method, 0, 429, wait)), token)
            try:
                payload = self._dispatch(method, token, params)
            except _SlackError as err:
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
            user = known.user_id if known else None
            self._calls.append(Call(method, dict(params), reply.status, error, user))
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
                    raise _SlackError("invalid_form_data") from exc
                form_token = form.pop("token", form_token)
                params.update(form)
            elif content_type == "application/json":
                # Slack ignores a token inside a JSON body: it must be in the Authorization header.
                try:
                    decoded = json.loads(body)
                except (UnicodeDecodeError, ValueError) as exc:
                    raise _SlackError("invalid_json") from exc
                if not isinstance(decoded, dict):
                    raise _SlackError("invalid_json")
                decoded.pop("token", None)
                params.update(_flatten_json(decoded))
            elif not content_type:
                raise _SlackError("missing_post_type")
            else:
                raise _SlackError("invalid_post_type")
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else form_token
        return params, token or None

    def _dispatch(self, method: str, token: str | None, params: Params) -> JSON:
        entry = self._methods.get(method)
        if entry is None:
            raise _SlackError("unknown_method")
        if token is None:
            raise _SlackError("not_authed")
        tok = self._tokens.get(token)
        if tok is None:
            raise _SlackError("invalid_auth")
        owner = self._users.get(tok.user_id)
        if tok.inactive or (owner is not None and owner.deleted):
            raise _SlackError("account_inactive")
        scope, handler = entry
        if scope is not None:
            self._require_scope(tok, scope)
        return handler(tok, params)

    @staticmethod
    def _require_scope(tok: _Token, scope: str) -> None:
        if scope not in tok.scopes:
            raise _SlackError("missing_scope", needed=scope, provided=",".join(sorted(tok.scopes)))

    def _paginate(self, items: Sequence[JSON], kind: str, params: Params) -> tuple[list[JSON], str]:
        """Slice by cursor and limit; never more than ``page_limit_cap`` items, like a busy Slack."""
        raw_limit = params.get("limit", "").strip()
        try:
            limit = int(raw_limit) if raw_limit else 0
        except ValueError as exc:
            raise _SlackError("invalid_limit") from exc
        if limit < 0:
            raise _SlackError("invalid_limit")
        if limit == 0:
            # users.list: "no limit" asks for everything; conversations.list documents a default of 100.
            limit = self.page_limit_cap if kind == "user" else DEFAULT_PAGE_LIMIT
        limit = max(1, min(limit, self.page_limit_cap))
        start = 0
        cursor = params.get("cursor", "")
        if cursor:
            try:
                cursor_kind, _, next_id = base64.b64decode(cursor, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise _SlackError("invalid_cursor") from exc
            ids = [item["id"] for item in items]
            if cursor_kind != kind or next_id not in ids:
                raise _SlackError("invalid_cursor")
            start = ids.index(next_id)
        page = list(items[start : start + limit])
        end = start + limit
        next_cursor = _encode_cursor(kind, items[end]["id"]) if end < len(items) else ""
        if self.endless_pages and items and not next_cursor:
            next_cursor = _encode_cursor(kind, items[0]["id"])  # back to the start, forever
        return page, next_cursor

    # ------------------------------------------------------------------ JSON shapes

    @staticmethod
    def _user_json(user: _User, *, with_email: bool) -> JSON:
        profile: JSON = {
            "real_name": user.real_name,
            "real_name_normalized": user.real_name,
            "display_name": user.name,
            "display_name_normalized": user.name,
        }
        if with_email:
            profile["email"] = user.email
        return {
            "id": user.id,
            "team_id": TEAM_ID,
            "name": user.name,
            "deleted": user.deleted,
            "real_name": user.real_name,
            "is_bot": user.is_bot,
            "is_app_user": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "profile": profile,
        }

    @staticmethod
    def _channel_json(chan: _Channel) -> JSON:
        return {
            "id": chan.id,
            "name": chan.name,
            "name_normalized": chan.name,
            "is_channel": not chan.is_private,
            "is_group": chan.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": chan.is_private,
            "is_archived": chan.is_archived,
            "is_general": False,
            "is_shared": False,
            "is_member": False,
            "created": chan.created,
            "context_team_id": TEAM_ID,
            "num_members": 0,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        }

    @staticmethod
    def _group_json(group: _Usergroup, *, include_users: bool, include_count: bool) -> JSON:
        data: JSON = {
            "id": group.id,
            "team_id": TEAM_ID,
            "is_usergroup": True,
            "is_subteam": True,
            "name": group.name,
            "description": group.description,
            "handle": group.handle,
            "is_external": False,
            "date_create": group.date_create,
            "date_update": group.date_update,
            "date_delete": group.date_delete,
            "auto_type": None,
            "auto_provision": False,
            "enterprise_subteam_id": "",
            "created_by": group.created_by,
            "updated_by": group.updated_by,
            "deleted_by": group.deleted_by,
            "prefs": {"channels": list(group.channels), "groups": []},
            "channel_count": len(group.channels),
        }
        if include_users:
            data["users"] = list(group.users)
        if include_count:
            data["user_count"] = len(group.users)
        return data

    # ------------------------------------------------------------------ methods

    def _auth_test(self, tok: _Token, params: Params) -> JSON:
        owner = self._users.get(tok.user_id)
        return {
            "url": f"https://{self.team_id.lower()}.slack.test/",
            "team": TEAM_NAME,
            "user": owner.name if owner else "reconciler",
            "team_id": self.team_id,
            "user_id": tok.user_id,
            "is_enterprise_install": False,
        }

    def _users_list(self, tok: _Token, params: Params) -> JSON:
        with_email = "users:read.email" in tok.scopes
        members = [self._user_json(u, with_email=with_email) for u in self._users.values()]
        page, next_cursor = self._paginate(members, "user", params)
        return {
            "members": page,
            "cache_ts": int(time.time()),
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _users_lookup_by_email(self, tok: _Token, params: Params) -> JSON:
        email = params.get("email")
        if email is None:
            raise _SlackError("missing_argument")
        for user in self._users.values():
            # Documented: a deactivated user answers users_not_found, not a user object.
            if user.email.casefold() == email.strip().casefold() and not user.deleted:
                return {"user": self._user_json(user, with_email=True)}
        raise _SlackError("users_not_found")

    def _conversations_list(self, tok: _Token, params: Params) -> JSON:
        types = _csv(params.get("types")) or ["public_channel"]
        if any(t not in _CONVERSATION_TYPE_SCOPES for t in types):
            raise _SlackError("invalid_types")
        for conv_type in types:
            self._require_scope(tok, _CONVERSATION_TYPE_SCOPES[conv_type])
        exclude_archived = _truthy(params.get("exclude_archived"))
        chans = [
            self._channel_json(c)
            for c in self._channels.values()
            if ("private_channel" if c.is_private else "public_channel") in types
            and not (exclude_archived and c.is_archived)
        ]
        page, next_cursor = self._paginate(chans, "channel", params)
        return {"channels": page, "response_metadata": {"next_cursor": next_cursor}}

    def _usergroups_list(self, tok: _Token, params: Params) -> JSON:
        include_disabled = _truthy(params.get("include_disabled"))
        include_users = _truthy(params.get("include_users"))
        include_count = _truthy(params.get("include_count"))
        groups = [
            self._group_json(g, include_users=include_users, include_count=include_count)
            for g in self._groups.values()
            if include_disabled or g.date_delete == 0
        ]
        return {"usergroups": groups}

    def _find_group(self, params: Params) -> _Usergroup:
        group_id = params.get("usergroup")
        if not group_id:
            raise _SlackError("missing_argument")
        group = self._groups.get(group_id)
        if group is None:
            raise _SlackError("no_such_subteam")
        return group

    def _usergroups_users_list(self, tok: _Token, params: Params) -> JSON:
        group = self._find_group(params)
        if group.date_delete and not _truthy(params.get("include_disabled")):
            raise _SlackError("no_such_subteam")
        return {"users": list(group.users)}

    def _check_unique(self, *, name: str | None, handle: str | None, exclude: str | None) -> None:
        """Names are unique among groups; handles among groups, users and channels (disabled ones too)."""
        others = [g for g in self._groups.values() if g.id != exclude]
        if name is not None and any(g.name.casefold() == name.casefold() for g in others):
            raise _SlackError("name_already_exists")
        if handle:
            folded = handle.casefold()
            taken = {g.handle.casefold() for g in others}
            taken |= {u.name.casefold() for u in self._users.values() if not u.deleted}
            taken |= {c.name.casefold() for c in self._channels.values()}
            if folded in taken:
                raise _SlackError("handle_already_exists")

    def _channels_param(self, params: Params) -> list[str] | None:
        if "channels" not in params:
            return None
        channels = list(dict.fromkeys(_csv(params["channels"])))
        if any(c not in self._channels for c in channels):
            raise _SlackError("invalid_channel_provided")
        return channels

    def _usergroups_create(self, tok: _Token, params: Params) -> JSON:
        name = params.get("name")
        if name is None:
            raise _SlackError("missing_argument")
        if not name.strip():
            raise _SlackError("missing_subteam_name")
        handle = params.get("handle", "").strip()
        self._check_unique(name=name, handle=handle, exclude=None)
        channels = self._channels_param(params) or []
        now = self._now()
        group = _Usergroup(
            id=self._next_id("S"),
            name=name,
            handle=handle,
            description=params.get("description", ""),
            users=[],
            channels=channels,
            date_create=now,
            date_update=now,
            date_delete=0,
            created_by=tok.user_id,
            updated_by=tok.user_id,
        )
        self._groups[group.id] = group
        return {"usergroup": self._group_json(group, include_users=False, include_count=self._count(params))}

    @staticmethod
    def _count(params: Params) -> bool:
        return _truthy(params.get("include_count"))

    def _usergroups_update(self, tok: _Token, params: Params) -> JSON:
        group = self._find_group(params)
        name = params.get("name")
        if name is not None and not name.strip():
            raise _SlackError("missing_subteam_name")
        handle = params.get("handle")
        self._check_unique(name=name, handle=handle.strip() if handle else None, exclude=group.id)
        channels = self._channels_param(params)
        if name is not None:
            group.name = name
        if handle is not None and handle.strip():
            group.handle = handle.strip()
        if "description" in params:
            group.description = params["description"]
        if channels is not None:
            group.channels = channels
        group.date_update, group.updated_by = self._now(), tok.user_id
        return {"usergroup": self._group_json(group, include_users=True, include_count=self._count(params))}

    def _usergroups_users_update(self, tok: _Token, params: Params) -> JSON:
        group = self._find_group(params)
        users = list(dict.fromkeys(_csv(params.get("users"))))
        if not users:
            # Documented: "You cannot use this method to remove all members"; disable the group instead.
            raise _SlackError("no_users_provided")
        for user_id in users:
            user = self._users.get(user_id)
            if user is None or user.deleted:
                raise _SlackError("invalid_users")
            if user.is_bot:
                raise _SlackError("invalid_user")
        group.users = users
        group.date_update, group.updated_by = self._now(), tok.user_id
        return {"usergroup": self._group_json(group, include_users=True, include_count=self._count(params))}

    def _usergroups_enable(self, tok: _Token, params: Params) -> JSON:
        group = self._find_group(params)
        group.date_delete, group.deleted_by = 0, None
        group.date_update, group.updated_by = self._now(), tok.user_id
        return {"usergroup": self._group_json(group, include_users=False, include_count=self._count(params))}

    def _usergroups_disable(self, tok: _Token, params: Params) -> JSON:
        group = self._find_group(params)
        now = self._now()
        group.date_delete, group.deleted_by = now, tok.user_id
        group.date_update, group.updated_by = now, tok.user_id
        return {"usergroup": self._group_json(group, include_users=False, include_count=self._count(params))}


class _HTTPServer(ThreadingHTTPServer):
    """Carries the owning SlackTestServer to request handlers; quiet about client disconnects."""

    daemon_threads = True
    slack: SlackTestServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):
            return
        super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    """Adapts HTTP to ``SlackTestServer.handle``; Slack accepts GET and POST for every method."""

    server_version = "SlackTestServer/1.0"

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: tests read the call log instead of stderr noise."""

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if not parts.path.startswith("/api/"):
            self._send(404, {"ok": False, "error": "not_found"}, {})
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        slack = cast(_HTTPServer, self.server).slack
        method = parts.path[len("/api/") :]
        reply = slack.handle(method, parts.query, headers, body)
        if reply.raw is not None and reply.raw.raw is not None:
            self._send_raw(reply.status, reply.raw.raw, reply.raw.content_type, reply.raw.truncated)
            return
        drips = slack.drip_methods is None or method in slack.drip_methods
        self._send(reply.status, reply.body, reply.headers, drip=slack.drip_seconds if drips else 0.0)

    def _send_raw(self, status: int, data: bytes, content_type: str, truncated: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data) * 2 if truncated else len(data)))
        if truncated:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _send(self, status: int, body: JSON, headers: Mapping[str, str], *, drip: float = 0.0) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if drip <= 0:
            self.wfile.write(data)
            return
        for index in range(len(data)):  # each byte well within any socket timeout, the whole never
            self.wfile.write(data[index : index + 1])
            self.wfile.flush()
            time.sleep(drip)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; prints the api_url first so a harness can use port 0."""
    parser = argparse.ArgumentParser(description="Local Slack Web API test server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds slept per call")
    parser.add_argument("--page-limit-cap", type=int, default=200)
    parser.add_argument("--seed-file", help='JSON: {"tokens", "users", "channels", "usergroups"}')
    parser.add_argument("--drip-seconds", type=float, default=0.0, help="hostile: body byte by byte")
    parser.add_argument("--endless-pages", action="store_true", help="hostile: always a next page")
    parser.add_argument("--retry-after", type=int, default=0, help="hostile: every call 429 with this")
    parser.add_argument("--tier-window", type=float, help="enforce Slack's tiers over this many seconds")
    parser.add_argument("--team-id", default=TEAM_ID)
    args = parser.parse_args(argv)
    server = SlackTestServer(host=args.host, port=args.port, latency=args.latency, team_id=args.team_id)
    server.page_limit_cap = args.page_limit_cap
    server.drip_seconds = args.drip_seconds
    server.endless_pages = args.endless_pages
    if args.retry_after:
        server.rate_limit(None, 10**9, retry_after=args.retry_after)
    server.enforce_tiers(args.tier_window)
    if args.seed_file:
        with open(args.seed_file, encoding="utf-8") as fh:
            server.load_seed(json.load(fh))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server:
        print(server.api_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
