"""Local GitLab REST API v4 server for tests and benchmarks.

Why: the operator talks to GitLab through the real ``python-gitlab`` client, and mocks of that client
prove nothing about URLs, pagination, retries or error bodies. This server speaks the small part of
the v4 API the operator uses (users, groups, projects, group and project members), with the status
codes, error bodies and pagination headers that GitLab's own code and documentation describe, so
``gitlab.Gitlab(server.url, private_token=...)`` can be pointed at it unchanged.

Run it standalone for benchmarks::

    python -m reconciler_testing.gitlab --port 8929 --latency 0.05 --seed-file state.json

Seed file (all keys optional)::

    {"users": [{"username": "alice", "name": "Alice", "state": "active"}],
     "tokens": [{"token": "t0k", "username": "alice", "scopes": ["api"]}],
     "groups": ["acme", "acme/platform"],
     "projects": ["acme/platform/api"],
     "members": [{"kind": "group", "path": "acme", "username": "alice", "access_level": 50}]}
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import Message
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

__all__ = [
    "DEVELOPER",
    "GUEST",
    "MAINTAINER",
    "MINIMAL_ACCESS",
    "OWNER",
    "PLANNER",
    "REPORTER",
    "Call",
    "GitLabTestServer",
    "main",
]

MINIMAL_ACCESS = 5
GUEST = 10
PLANNER = 15
REPORTER = 20
DEVELOPER = 30
MAINTAINER = 40
OWNER = 50

# Gitlab::Access human names, used in the "inherited membership" validation message.
_ACCESS_NAMES: dict[int, str] = {
    MINIMAL_ACCESS: "Minimal Access",
    GUEST: "Guest",
    PLANNER: "Planner",
    REPORTER: "Reporter",
    DEVELOPER: "Developer",
    MAINTAINER: "Maintainer",
    OWNER: "Owner",
}
# Minimal access is only valid on groups (EE); owner is valid on both since GitLab 14.9.
_VALID_LEVELS: dict[str, frozenset[int]] = {
    "group": frozenset(_ACCESS_NAMES),
    "project": frozenset(_ACCESS_NAMES) - {MINIMAL_ACCESS},
}

Kind = Literal["group", "project"]
Json = dict[str, Any]

_API_PREFIX = "/api/v4"
_DEFAULT_PER_PAGE = 20
_MAX_PER_PAGE = 100
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_READ_METHODS = frozenset({"GET", "HEAD"})
_TRUE = frozenset({"true", "1", "t", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "f", "no", "n", "off"})
# Rack::Attack answer text: Gitlab::Throttle::DEFAULT_RATE_LIMITING_RESPONSE_TEXT plus a newline.
_RATE_LIMIT_TEXT = b"Retry later\n"
# Rack::OAuth2 DEFAULT_DESCRIPTION[:insufficient_scope], sent by APIGuard for a too-weak token.
_INSUFFICIENT_SCOPE = "The request requires higher privileges than provided by the access token."
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


@dataclass
class _User:
    id: int
    username: str
    name: str
    state: str


@dataclass
class _Token:
    user_id: int
    scopes: frozenset[str]
    id: int = 0


@dataclass
class _Group:
    id: int
    full_path: str
    name: str
    parent_id: int | None

    @property
    def path(self) -> str:
        return self.full_path.rsplit("/", 1)[-1]


@dataclass
class _Project:
    id: int
    path_with_namespace: str
    name: str
    namespace_id: int

    @property
    def path(self) -> str:
        return self.path_with_namespace.rsplit("/", 1)[-1]


@dataclass
class _Membership:
    access_level: int
    expires_at: str | None
    created_at: str
    seq: int


@dataclass
class _Fault:
    remaining: int
    status: int
    retry_after: int
    method: str | None
    path_prefix: str | None
    raw: bytes | None = None
    """Answer these bytes as they are (an HTML error page, a cut-off body) instead of JSON."""
    content_type: str = "text/html; charset=utf-8"
    truncated: bool = False
    """Declare a Content-Length longer than `raw` and close the connection early."""

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path_prefix is None or path.startswith(_full_prefix(self.path_prefix))


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    truncated: bool = False


class _ApiError(Exception):
    """Raised by handlers to answer with GitLab's error body instead of a result."""

    def __init__(self, status: int, body: Json, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers = list(headers)


def _full_prefix(prefix: str) -> str:
    """Let callers write "/groups/1/members" as well as "/api/v4/groups/1/members"."""
    return prefix if prefix.startswith("/api/") else _API_PREFIX + prefix


def _message(status: int, message: object) -> _ApiError:
    """GitLab's render_api_error!: ``{"message": ...}``."""
    return _ApiError(status, {"message": message})


def _not_found(resource: str | None = None) -> _ApiError:
    """GitLab's not_found!(resource): ``{"message": "404 Group Not Found"}``."""
    return _message(404, f"404 {resource} Not Found" if resource else "404 Not Found")


def _record_not_found() -> _ApiError:
    """ActiveRecord::RecordNotFound, e.g. an unknown member id: note the lower-case "found"."""
    return _message(404, "404 Not found")


def _param_error(text: str) -> _ApiError:
    """Grape parameter validation failures answer ``{"error": ...}``, not ``{"message": ...}``."""
    return _ApiError(400, {"error": text})


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _json_bytes(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: GitLabTestServer) -> None:
        super().__init__(address, _Handler)
        self.app = app

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about clients that hang up (a cut slow drip, a timeout); loud about the rest."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes; avoid 40 ms stalls
    server_version = "nginx"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Tests read the call log instead; stderr noise hides real failures."""

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        app = cast(_HTTPServer, self.server).app
        response = app.handle(self.command, self.path, self.headers, body)
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        if response.status != 204:
            declared = len(response.body) * 2 if response.truncated else len(response.body)
            self.send_header("Content-Length", str(declared))
        if response.truncated:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD" and response.status != 204 and response.body:
            if app.drip_seconds <= 0:
                self.wfile.write(response.body)
                return
            try:
                for index in range(
                    len(response.body)
                ):  # each byte within any socket timeout, never the whole
                    self.wfile.write(response.body[index : index + 1])
                    self.wfile.flush()
                    time.sleep(app.drip_seconds)
            except ConnectionError:
                self.close_connection = True  # the client gave up on the drip, as it should

    do_GET = _dispatch
    do_HEAD = _dispatch
    do_POST = _dispatch
    do_PUT = _dispatch
    do_PATCH = _dispatch
    do_DELETE = _dispatch


class GitLabTestServer:
    """In-memory GitLab on 127.0.0.1 that the real python-gitlab client can talk to.

    State is changed through the helper methods (``add_user`` ...) or through the API itself, and
    read back with ``members()`` and the call log. Every state access holds one lock because the
    HTTP server answers each connection on its own thread.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, latency: float = 0.0) -> None:
        self.latency = latency
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._users: dict[int, _User] = {}
        self._tokens: dict[str, _Token] = {}
        self._groups: dict[int, _Group] = {}
        self._projects: dict[int, _Project] = {}
        self._members: dict[tuple[str, int], dict[int, _Membership]] = {}
        self._calls: list[Call] = []
        self._faults: list[_Fault] = []
        self._next_user_id = 1
        self._next_source_id = 100
        self._seq = 0
        self.errors: list[str] = []
        """Tracebacks of handler crashes (answered as 500), so tests can fail loudly on server bugs."""
        self.drip_seconds = 0.0
        """Hostile: send each answer's body one byte at a time, this long apart (0: at once)."""
        self.endless_pages = False
        """Hostile: listings always announce a next page (`X-Next-Page`, `Link: rel="next"`)."""
        self.user_rate_limit: tuple[int, float] | None = None
        """(limit, window seconds): GitLab's throttle_authenticated_api, per user, a sliding window
        (GitLab's 2000 per minute, shortened for tests and benchmarks). None: no limit."""
        self.rate_limited = 0
        """429 answers given by `user_rate_limit`."""
        self._user_calls: dict[int, collections.deque[float]] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> GitLabTestServer:
        """Bind a free loopback port and serve from a daemon thread."""
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="gitlab-test-server"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> GitLabTestServer:
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
        """The bound port (a free one picked by the OS unless given)."""
        if self._httpd is None:
            raise RuntimeError("server is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL for ``gitlab.Gitlab(url=...)`` (python-gitlab appends /api/v4 itself)."""
        return f"http://{self._host}:{self.port}"

    # ------------------------------------------------------------------ state helpers

    def add_user(self, username: str, *, name: str | None = None, state: str = "active") -> int:
        """Create a user ("active" or "blocked") and return its id."""
        with self._lock:
            if self._find_user_by_username(username) is not None:
                raise ValueError(f"user {username!r} already exists")
            user = _User(self._next_user_id, username, name or username.replace("_", " ").title(), state)
            self._next_user_id += 1
            self._users[user.id] = user
            return user.id

    def set_user_state(self, username: str, state: str) -> None:
        """Block or unblock a user after creation (GitLab admins do this out of band)."""
        with self._lock:
            self._require_user(username).state = state

    def add_token(self, token: str, *, username: str, scopes: Sequence[str] = ("api",)) -> None:
        """Register a personal access token acting as ``username``; ``read_api`` allows GETs only."""
        with self._lock:
            self._tokens[token] = _Token(
                self._require_user(username).id, frozenset(scopes), id=len(self._tokens) + 1
            )

    def add_group(self, full_path: str, *, parent: str | None = None, name: str | None = None) -> int:
        """Create a group and return its id.

        ``full_path`` is the whole path ("acme/platform"); the parent is taken from it. Missing
        ancestors are created too, so the hierarchy always matches the path as in GitLab. ``parent``
        may name the parent explicitly, in which case ``full_path`` may also be just the last segment.
        """
        full_path = full_path.strip("/")
        if parent is not None and not full_path.lower().startswith(parent.strip("/").lower() + "/"):
            full_path = f"{parent.strip('/')}/{full_path}"
        with self._lock:
            if self._find_group(full_path) is not None:
                raise ValueError(f"group {full_path!r} already exists")
            parent_id: int | None = None
            if "/" in full_path:
                parent_path = full_path.rsplit("/", 1)[0]
                found = self._find_group(parent_path)
                if found is None:
                    if parent is not None:
                        raise ValueError(f"parent group {parent!r} does not exist")
                    parent_id = self.add_group(parent_path)
                else:
                    parent_id = found.id
            group = _Group(self._new_source_id(), full_path, name or full_path.rsplit("/", 1)[-1], parent_id)
            self._groups[group.id] = group
            self._members[("group", group.id)] = {}
            return group.id

    def add_project(self, path_with_namespace: str, *, name: str | None = None) -> int:
        """Create a project in an existing group namespace and return its id."""
        path_with_namespace = path_with_namespace.strip("/")
        if "/" not in path_with_namespace:
            raise ValueError("project path must include its group namespace")
        namespace_path, path = path_with_namespace.rsplit("/", 1)
        with self._lock:
            namespace = self._find_group(namespace_path)
            if namespace is None:
                raise ValueError(f"namespace group {namespace_path!r} does not exist")
            if self._find_project(path_with_namespace) is not None:
                raise ValueError(f"project {path_with_namespace!r} already exists")
            project = _Project(self._new_source_id(), path_with_namespace, name or path, namespace.id)
            self._projects[project.id] = project
            self._members[("project", project.id)] = {}
            return project.id

    def add_member(
        self, kind: str, path: str, username: str, access_level: int, expires_at: str | None = None
    ) -> None:
        """Set a direct membership, bypassing API validation (seed data may be as messy as real data)."""
        with self._lock:
            source_key = self._require_source(kind, path)
            user = self._require_user(username)
            self._members[source_key][user.id] = _Membership(
                access_level, expires_at, _now_iso(), self._next_seq()
            )

    def remove_member(self, kind: str, path: str, username: str) -> None:
        """Drop a direct membership behind the operator's back (drift)."""
        with self._lock:
            source_key = self._require_source(kind, path)
            self._members[source_key].pop(self._require_user(username).id, None)

    def members(self, kind: str, path: str) -> dict[str, dict[str, Any]]:
        """Direct members of a group or project: username -> {access_level, expires_at}."""
        with self._lock:
            source_key = self._require_source(kind, path)
            return {
                self._users[user_id].username: {"access_level": m.access_level, "expires_at": m.expires_at}
                for user_id, m in self._members[source_key].items()
            }

    def user_id(self, username: str) -> int:
        """Id to put in API calls and assertions; ids are assigned by the server as in GitLab."""
        with self._lock:
            return self._require_user(username).id

    def group_id(self, full_path: str) -> int:
        """Numeric id of a group, for building expected request paths."""
        with self._lock:
            group = self._find_group(full_path)
            if group is None:
                raise KeyError(full_path)
            return group.id

    def project_id(self, path_with_namespace: str) -> int:
        """Numeric id of a project, for building expected request paths."""
        with self._lock:
            project = self._find_project(path_with_namespace)
            if project is None:
                raise KeyError(path_with_namespace)
            return project.id

    def load_seed(self, data: Mapping[str, Any]) -> None:
        """Load users, tokens, groups, projects and members from a seed mapping (see module doc)."""
        with self._lock:
            self._load_seed(data)

    def _load_seed(self, data: Mapping[str, Any]) -> None:
        for user in data.get("users", []):
            if isinstance(user, str):
                self.add_user(user)
            else:
                self.add_user(user["username"], name=user.get("name"), state=user.get("state", "active"))
        for token in data.get("tokens", []):
            self.add_token(token["token"], username=token["username"], scopes=token.get("scopes", ("api",)))
        for group in data.get("groups", []):
            group_path = group if isinstance(group, str) else group["full_path"]
            if self._find_group(group_path) is None:
                self.add_group(group_path)
        for project in data.get("projects", []):
            self.add_project(project if isinstance(project, str) else project["path_with_namespace"])
        for member in data.get("members", []):
            self.add_member(
                member["kind"],
                member["path"],
                member["username"],
                int(member["access_level"]),
                member.get("expires_at"),
            )

    # ------------------------------------------------------------------ call log and faults

    @property
    def calls(self) -> list[Call]:
        """Every request so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._calls)

    def write_calls(self) -> list[Call]:
        """Successful writes only: what actually changed GitLab."""
        with self._lock:
            return [c for c in self._calls if c.method in _WRITE_METHODS and 200 <= c.status < 300]

    def reset_calls(self) -> None:
        """Forget the log so a test can count only the calls of the step under test."""
        with self._lock:
            self._calls.clear()

    def calls_matching(self, method: str, path_prefix: str) -> int:
        """Count calls with this method whose path starts with the prefix ("/api/v4" is optional)."""
        prefix = _full_prefix(path_prefix)
        with self._lock:
            return sum(1 for c in self._calls if c.method == method.upper() and c.path.startswith(prefix))

    def rate_limit(
        self, times: int, retry_after: int = 1, method: str | None = None, *, path_prefix: str | None = None
    ) -> None:
        """Answer the next ``times`` matching requests with GitLab's Rack::Attack 429."""
        with self._lock:
            self._faults.append(_Fault(times, 429, retry_after, method, path_prefix))

    def fail(
        self, times: int, status: int = 500, method: str | None = None, *, path_prefix: str | None = None
    ) -> None:
        """Answer the next ``times`` matching requests with a server error."""
        with self._lock:
            self._faults.append(_Fault(times, status, 0, method, path_prefix))

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
        with self._lock:
            self._faults.append(_Fault(times, status, 0, method, path_prefix, body, content_type, truncated))

    def clear_faults(self) -> None:
        """Drop injected faults that were not used up."""
        with self._lock:
            self._faults.clear()

    # ------------------------------------------------------------------ request handling

    def handle(self, method: str, target: str, headers: Message, body: bytes) -> _Response:
        """Answer one HTTP request; called from the handler threads."""
        if self.latency > 0:
            time.sleep(self.latency)
        split = urlsplit(target)
        raw_path = split.path
        query_pairs = parse_qsl(split.query, keep_blank_values=True)
        body_params: Json = {}
        try:
            body_params = self._parse_body(headers, body)
            response = self._route(method, raw_path, query_pairs, body_params, headers)
        except _ApiError as err:
            response = _Response(
                err.status, _json_bytes(err.body), [("Content-Type", "application/json"), *err.headers]
            )
        except Exception:
            with self._lock:
                self.errors.append(traceback.format_exc())
            response = _ok({"message": "500 Internal Server Error"}, status=500)
        with self._lock:
            found = self._find_token({**_pairs_to_params(query_pairs), **body_params}, headers)
            user = self._users[found.user_id].username if found and found.user_id in self._users else None
            self._calls.append(Call(method, raw_path, dict(query_pairs), response.status, body_params, user))
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
                raise _param_error("The provided content-type 'application/json' is not supported.") from exc
            return cast(Json, parsed) if isinstance(parsed, dict) else {}
        return _pairs_to_params(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    return fault
            self._faults = [f for f in self._faults if f.remaining > 0]
            return None

    def _route(
        self, method: str, raw_path: str, query_pairs: list[tuple[str, str]], body: Json, headers: Message
    ) -> _Response:
        fault = self._take_fault(method, raw_path)
        if fault is not None:
            return _fault_response(fault)
        if not raw_path.startswith(_API_PREFIX + "/"):
            raise _ApiError(404, {"error": "404 Not Found"})
        parts = [unquote(p) for p in raw_path[len(_API_PREFIX) + 1 :].split("/")]
        while parts and parts[-1] == "":
            parts.pop()
        verb = "GET" if method == "HEAD" else method
        handler, allowed = self._match(parts)
        if handler is None:
            raise _ApiError(404, {"error": "404 Not Found"})
        if verb not in allowed:
            raise _ApiError(405, {"error": "405 Not Allowed"}, [("Allow", ", ".join(sorted(allowed)))])
        params = _pairs_to_params(query_pairs)
        params.update(body)
        with self._lock:
            user = self._authenticate(method, parts, params, headers)
            throttled = self._throttle(user)
            if throttled is not None:
                return throttled
            return handler(verb, user, params, _Page(raw_path, query_pairs, headers, self))

    def _throttle(self, user: _User) -> _Response | None:
        """`user_rate_limit`: a 429 with Retry-After once the user made `limit` calls in the window."""
        if self.user_rate_limit is None:
            return None
        limit, window = self.user_rate_limit
        now = time.monotonic()
        calls = self._user_calls.setdefault(user.id, collections.deque())
        while calls and calls[0] <= now - window:
            calls.popleft()
        if len(calls) < limit:
            calls.append(now)
            return None
        self.rate_limited += 1
        wait = max(1, math.ceil(calls[0] + window - now))
        return _fault_response(_Fault(1, 429, wait, None, None))

    def _match(self, parts: list[str]) -> tuple[_HandlerFn | None, frozenset[str]]:
        """Map path segments to a handler and the methods it allows."""
        n = len(parts)
        get = frozenset({"GET"})
        if parts == ["user"]:
            return self._h_current_user, get
        if parts == ["personal_access_tokens", "self"]:
            return self._h_token_self, get
        if n == 1 and parts[0] == "users":
            return self._h_users, get
        if n == 2 and parts[0] == "users":
            return _bind(self._h_user, parts[1]), get
        if n >= 2 and parts[0] in ("groups", "projects"):
            kind = "group" if parts[0] == "groups" else "project"
            ident = parts[1]
            if n == 2:
                return _bind(self._h_source, kind, ident), get
            if n >= 3 and parts[2] == "members":
                if n == 3:
                    return _bind(self._h_members, kind, ident), frozenset({"GET", "POST"})
                if n == 4 and parts[3] == "all":
                    return _bind(self._h_members_all, kind, ident), get
                if n == 5 and parts[3] == "all":
                    return _bind(self._h_member_all, kind, ident, parts[4]), get
                if n == 4:
                    return _bind(self._h_member, kind, ident, parts[3]), frozenset({"GET", "PUT", "DELETE"})
        return None, frozenset()

    def _find_token(self, params: Json, headers: Message) -> _Token | None:
        token = headers.get("PRIVATE-TOKEN")
        auth = headers.get("Authorization") or ""
        if not token and auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        if not token:
            raw = params.get("private_token") or params.get("access_token")
            token = raw if isinstance(raw, str) else None
        return self._tokens.get(token) if token else None

    def _authenticate(self, method: str, parts: list[str], params: Json, headers: Message) -> _User:
        """PRIVATE-TOKEN or Bearer token; scopes and blocked users as in API::APIGuard."""
        found = self._find_token(params, headers)
        if found is None or found.user_id not in self._users:
            raise _message(401, "401 Unauthorized")
        if not self._scope_allows(found.scopes, method, parts):
            required = "api" if method not in _READ_METHODS else "api read_api"
            raise _ApiError(
                403,
                {
                    "error": "insufficient_scope",
                    "error_description": _INSUFFICIENT_SCOPE,
                    "scope": required,
                },
                [("WWW-Authenticate", f'Bearer realm="", error="insufficient_scope", scope="{required}"')],
            )
        user = self._users[found.user_id]
        if user.state == "blocked":
            raise _message(403, "403 Forbidden - Your account has been blocked.")
        return user

    @staticmethod
    def _scope_allows(scopes: frozenset[str], method: str, parts: list[str]) -> bool:
        if "api" in scopes:
            return True
        if method in _READ_METHODS and parts == ["personal_access_tokens", "self"]:
            return True  # a token may always describe itself, whatever its scopes
        if method in _READ_METHODS and "read_api" in scopes:
            return True
        return method in _READ_METHODS and "read_user" in scopes and parts[:1] in (["user"], ["users"])

    # ------------------------------------------------------------------ handlers (lock held)

    def _h_token_self(self, verb: str, user: _User, params: Json, page: _Page) -> _Response:
        """GET /personal_access_tokens/self: the token of the request, as the PAT API describes it."""
        token = self._find_token(params, page.headers)
        assert token is not None  # _authenticate found it
        return _ok(
            {
                "id": token.id,
                "name": f"token-{token.id}",
                "revoked": False,
                "created_at": "2026-01-01T00:00:00.000Z",
                "description": None,
                "scopes": sorted(token.scopes),
                "user_id": user.id,
                "last_used_at": _now_iso(),
                "active": True,
                "expires_at": None,
            }
        )

    def _h_current_user(self, verb: str, user: _User, params: Json, page: _Page) -> _Response:
        return _ok(self._user_json(user, page.base))

    def _h_users(self, verb: str, user: _User, params: Json, page: _Page) -> _Response:
        users = sorted(self._users.values(), key=lambda u: u.id, reverse=True)
        username = params.get("username")
        if isinstance(username, str) and username:
            users = [u for u in users if u.username.lower() == username.lower()]
        search = params.get("search")
        if isinstance(search, str) and search:
            needle = search.lower()
            users = [u for u in users if needle in u.username.lower() or needle in u.name.lower()]
        if _get_bool(params, "active"):
            users = [u for u in users if u.state == "active"]
        if _get_bool(params, "blocked"):
            users = [u for u in users if u.state == "blocked"]
        return page.respond([self._user_json(u, page.base) for u in users], params)

    def _h_user(self, user_ident: str, verb: str, user: _User, params: Json, page: _Page) -> _Response:
        if not user_ident.isdigit():
            raise _param_error("id is invalid")
        found = self._users.get(int(user_ident))
        if found is None:
            raise _not_found("User")
        return _ok(self._user_json(found, page.base))

    def _h_source(
        self, kind: str, ident: str, verb: str, user: _User, params: Json, page: _Page
    ) -> _Response:
        source_id = self._resolve_source(kind, ident)
        if kind == "group":
            return _ok(self._group_json(self._groups[source_id], page.base))
        return _ok(self._project_json(self._projects[source_id], page.base))

    def _h_members(
        self, kind: str, ident: str, verb: str, user: _User, params: Json, page: _Page
    ) -> _Response:
        if verb == "POST":
            return self._create_member(kind, ident, params, page)
        source_id = self._resolve_source(kind, ident)
        rows = [
            (self._users[uid], m)
            for uid, m in sorted(self._members[(kind, source_id)].items(), key=lambda kv: kv[1].seq)
        ]
        rows = _filter_members(rows, params)
        return page.respond([self._member_json(u, m, page.base) for u, m in rows], params)

    def _h_members_all(
        self, kind: str, ident: str, verb: str, user: _User, params: Json, page: _Page
    ) -> _Response:
        source_id = self._resolve_source(kind, ident)
        rows = sorted(self._effective_members(kind, source_id).values(), key=lambda um: um[1].seq)
        rows = _filter_members(rows, params)
        return page.respond([self._member_json(u, m, page.base) for u, m in rows], params)

    def _h_member_all(
        self, kind: str, ident: str, user_ident: str, verb: str, user: _User, params: Json, page: _Page
    ) -> _Response:
        user_id = _parse_user_id(user_ident)
        source_id = self._resolve_source(kind, ident)
        row = self._effective_members(kind, source_id).get(user_id)
        if row is None:
            raise _record_not_found()
        return _ok(self._member_json(row[0], row[1], page.base))

    def _h_member(
        self, kind: str, ident: str, user_ident: str, verb: str, user: _User, params: Json, page: _Page
    ) -> _Response:
        user_id = _parse_user_id(user_ident)
        if verb == "PUT":
            return self._update_member(kind, ident, user_id, params, page)
        skip_subresources = _get_bool(params, "skip_subresources") if verb == "DELETE" else False
        _get_bool(params, "unassign_issuables")  # validated like Grape does; nothing to unassign here
        source_id = self._resolve_source(kind, ident)
        membership = self._members[(kind, source_id)].get(user_id)
        if membership is None:
            raise _record_not_found()
        if verb == "GET":
            return _ok(self._member_json(self._users[user_id], membership, page.base))
        if kind == "group" and membership.access_level == OWNER and self._is_last_owner(source_id, user_id):
            raise _message(403, "403 Forbidden")
        del self._members[(kind, source_id)][user_id]
        if kind == "group" and not skip_subresources:
            self._delete_subresource_memberships(source_id, user_id)
        return _Response(204)

    # ------------------------------------------------------------------ member writes

    def _create_member(self, kind: str, ident: str, params: Json, page: _Page) -> _Response:
        access_level = _get_int(params, "access_level", required=True)
        assert access_level is not None
        has_id = params.get("user_id") not in (None, "")
        has_name = params.get("username") not in (None, "")
        if has_id and has_name:
            raise _param_error("user_id, username are mutually exclusive")
        if not has_id and not has_name:
            raise _param_error("user_id, username are missing, at least one parameter must be provided")
        expires_at = _get_date(params, "expires_at")
        source_id = self._resolve_source(kind, ident)
        if has_id:
            raw_id = str(params["user_id"])
            if "," in raw_id:
                raise _message(400, "several user_ids in one request are not supported by the test server")
            if not raw_id.strip().isdigit():
                raise _param_error("user_id is invalid")
            target = self._users.get(int(raw_id))
        else:
            target = self._find_user_by_username(str(params["username"]))
        if target is None:
            raise _not_found("User")
        if target.id in self._members[(kind, source_id)]:
            raise _message(409, "Member already exists")
        self._validate_membership(kind, source_id, target.id, access_level, expires_at)
        membership = _Membership(
            access_level, expires_at.isoformat() if expires_at else None, _now_iso(), self._next_seq()
        )
        self._members[(kind, source_id)][target.id] = membership
        return _ok(self._member_json(target, membership, page.base), status=201)

    def _update_member(self, kind: str, ident: str, user_id: int, params: Json, page: _Page) -> _Response:
        access_level = _get_int(params, "access_level", required=True)
        assert access_level is not None
        clear_expiry = "expires_at" in params and params["expires_at"] in (None, "")
        expires_at = _get_date(params, "expires_at")
        source_id = self._resolve_source(kind, ident)
        membership = self._members[(kind, source_id)].get(user_id)
        if membership is None:
            raise _record_not_found()
        if kind == "group" and membership.access_level == OWNER and self._is_last_owner(source_id, user_id):
            raise _message(403, "403 Forbidden")
        self._validate_membership(kind, source_id, user_id, access_level, expires_at)
        membership.access_level = access_level
        if expires_at is not None:
            membership.expires_at = expires_at.isoformat()
        elif clear_expiry:
            membership.expires_at = None
        return _ok(self._member_json(self._users[user_id], membership, page.base))

    def _validate_membership(
        self, kind: str, source_id: int, user_id: int, access_level: int, expires_at: date | None
    ) -> None:
        """Model validations of Member, answered as render_validation_error! (400, message hash)."""
        errors: dict[str, list[str]] = {}
        if access_level not in _VALID_LEVELS[kind]:
            errors.setdefault("access_level", []).append("is not included in the list")
        else:
            inherited = self._highest_inherited(kind, source_id, user_id)
            if inherited is not None and inherited[1].access_level > access_level:
                group, m = inherited
                errors.setdefault("access_level", []).append(
                    f"should be greater than or equal to {_ACCESS_NAMES.get(m.access_level, m.access_level)} "
                    f"inherited membership from group {group.name}"
                )
        if expires_at is not None and expires_at < datetime.now(UTC).date():
            errors.setdefault("expires_at", []).append("cannot be a date in the past")
        if errors:
            raise _message(400, errors)

    def _delete_subresource_memberships(self, group_id: int, user_id: int) -> None:
        """Members::DestroyService without skip_subresources: projects in the group and all
        descendants, then direct memberships in descendant groups (a last owner stays)."""
        subtree = self._self_and_descendants(group_id)
        for project in self._projects.values():
            if project.namespace_id in subtree:
                self._members[("project", project.id)].pop(user_id, None)
        for sub_id in subtree - {group_id}:
            membership = self._members[("group", sub_id)].get(user_id)
            if membership is None:
                continue
            if membership.access_level == OWNER and self._is_last_owner(sub_id, user_id):
                continue
            del self._members[("group", sub_id)][user_id]

    # ------------------------------------------------------------------ hierarchy helpers

    def _group_chain(self, group_id: int) -> list[_Group]:
        """The group and its ancestors, closest first."""
        chain: list[_Group] = []
        current: int | None = group_id
        while current is not None:
            group = self._groups[current]
            chain.append(group)
            current = group.parent_id
        return chain

    def _sources_chain(self, kind: str, source_id: int) -> list[tuple[tuple[str, int], _Group | None]]:
        """Membership sources that grant access to a group/project, closest first."""
        if kind == "project":
            project = self._projects[source_id]
            return [(("project", source_id), None)] + [
                (("group", g.id), g) for g in self._group_chain(project.namespace_id)
            ]
        return [(("group", g.id), g) for g in self._group_chain(source_id)]

    def _effective_members(self, kind: str, source_id: int) -> dict[int, tuple[_User, _Membership]]:
        """members/all: per user the membership with the highest access level (GitLab docs); on a
        tie the closest one."""
        result: dict[int, tuple[_User, _Membership]] = {}
        for key, _group in self._sources_chain(kind, source_id):
            for uid, m in self._members[key].items():
                best = result.get(uid)
                if best is None or m.access_level > best[1].access_level:
                    result[uid] = (self._users[uid], m)
        return result

    def _highest_inherited(
        self, kind: str, source_id: int, user_id: int
    ) -> tuple[_Group, _Membership] | None:
        """Member#highest_group_member: the strongest membership in the ancestor groups."""
        best: tuple[_Group, _Membership] | None = None
        for key, group in self._sources_chain(kind, source_id)[1:]:
            m = self._members[key].get(user_id)
            if group is None or m is None:
                continue
            if best is None or m.access_level > best[1].access_level:
                best = (group, m)
        return best

    def _self_and_descendants(self, group_id: int) -> set[int]:
        found = {group_id}
        changed = True
        while changed:
            changed = False
            for group in self._groups.values():
                if group.parent_id in found and group.id not in found:
                    found.add(group.id)
                    changed = True
        return found

    def _is_last_owner(self, group_id: int, user_id: int) -> bool:
        """Group#last_owner?: owners of the group and its ancestors; blocked owners only count
        when no active owner is left (member_last_blocked_owner?)."""
        owners = {
            uid
            for g in self._group_chain(group_id)
            for uid, m in self._members[("group", g.id)].items()
            if m.access_level == OWNER
        }
        active = {uid for uid in owners if self._users[uid].state == "active"}
        if user_id in active:
            return active == {user_id}
        return user_id in owners and not active and owners == {user_id}

    # ------------------------------------------------------------------ lookups

    def _new_source_id(self) -> int:
        self._next_source_id += 1
        return self._next_source_id

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _find_user_by_username(self, username: str) -> _User | None:
        lowered = username.lower()
        return next((u for u in self._users.values() if u.username.lower() == lowered), None)

    def _require_user(self, username: str) -> _User:
        user = self._find_user_by_username(username)
        if user is None:
            raise KeyError(f"unknown user {username!r}")
        return user

    def _find_group(self, full_path: str) -> _Group | None:
        lowered = full_path.strip("/").lower()
        return next((g for g in self._groups.values() if g.full_path.lower() == lowered), None)

    def _find_project(self, path: str) -> _Project | None:
        lowered = path.strip("/").lower()
        return next((p for p in self._projects.values() if p.path_with_namespace.lower() == lowered), None)

    def _require_source(self, kind: str, path: str) -> tuple[str, int]:
        if kind == "group":
            group = self._find_group(path)
            if group is None:
                raise KeyError(f"unknown group {path!r}")
            return ("group", group.id)
        if kind == "project":
            project = self._find_project(path)
            if project is None:
                raise KeyError(f"unknown project {path!r}")
            return ("project", project.id)
        raise ValueError(f"kind must be 'group' or 'project', not {kind!r}")

    def _resolve_source(self, kind: str, ident: str) -> int:
        """find_group!/find_project!: digits are ids, anything else a full path."""
        if kind == "group":
            group = self._groups.get(int(ident)) if ident.isdigit() else self._find_group(ident)
            if group is None:
                raise _not_found("Group")
            return group.id
        project = self._projects.get(int(ident)) if ident.isdigit() else self._find_project(ident)
        if project is None:
            raise _not_found("Project")
        return project.id

    # ------------------------------------------------------------------ JSON entities

    def _user_json(self, user: _User, base: str) -> Json:
        return {
            "id": user.id,
            "username": user.username,
            "name": user.name,
            "state": user.state,
            "locked": False,
            "avatar_url": None,
            "web_url": f"{base}/{user.username}",
        }

    def _member_json(self, user: _User, m: _Membership, base: str) -> Json:
        return {
            **self._user_json(user, base),
            "access_level": m.access_level,
            "created_at": m.created_at,
            "expires_at": m.expires_at,
            "membership_state": "active",
            "group_saml_identity": None,
        }

    def _group_json(self, group: _Group, base: str) -> Json:
        chain = list(reversed(self._group_chain(group.id)))
        return {
            "id": group.id,
            "name": group.name,
            "path": group.path,
            "full_name": " / ".join(g.name for g in chain),
            "full_path": group.full_path,
            "parent_id": group.parent_id,
            "description": "",
            "visibility": "private",
            "web_url": f"{base}/groups/{group.full_path}",
        }

    def _project_json(self, project: _Project, base: str) -> Json:
        namespace = self._groups[project.namespace_id]
        group = self._group_json(namespace, base)
        return {
            "id": project.id,
            "name": project.name,
            "path": project.path,
            "path_with_namespace": project.path_with_namespace,
            "name_with_namespace": f"{group['full_name']} / {project.name}",
            "description": "",
            "default_branch": "main",
            "visibility": "private",
            "archived": False,
            "namespace": {
                "id": namespace.id,
                "name": namespace.name,
                "path": namespace.path,
                "kind": "group",
                "full_path": namespace.full_path,
                "parent_id": namespace.parent_id,
                "web_url": group["web_url"],
            },
            "web_url": f"{base}/{project.path_with_namespace}",
        }


_HandlerFn = Callable[[str, _User, Json, "_Page"], _Response]


def _bind(fn: Callable[..., _Response], *args: str) -> _HandlerFn:
    """Partial application that keeps mypy happy about the handler signature."""

    def bound(verb: str, user: _User, params: Json, page: _Page) -> _Response:
        return fn(*args, verb, user, params, page)

    return bound


@dataclass
class _Page:
    """Offset pagination as Gitlab::Pagination::OffsetHeaderBuilder writes it."""

    raw_path: str
    query_pairs: list[tuple[str, str]]
    headers: Message
    server: GitLabTestServer

    @property
    def base(self) -> str:
        host = self.headers.get("Host")
        return f"http://{host}" if host else self.server.url

    def respond(self, items: list[Json], params: Json) -> _Response:
        page = _get_int(params, "page") or 1
        per_page = _get_int(params, "per_page") or _DEFAULT_PER_PAGE
        page = max(page, 1)
        per_page = _DEFAULT_PER_PAGE if per_page < 1 else min(per_page, _MAX_PER_PAGE)
        total = len(items)
        total_pages = max(1, math.ceil(total / per_page))
        out_of_range = page > total_pages
        next_page = page + 1 if page < total_pages or self.server.endless_pages else None
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
            ("Content-Type", "application/json"),
            ("X-Per-Page", str(per_page)),
            ("X-Page", str(page)),
            ("X-Next-Page", str(next_page or "")),
            ("X-Prev-Page", str(prev_page or "")),
            ("Link", ", ".join(links)),
            ("X-Total", str(total)),
            ("X-Total-Pages", str(total_pages)),
        ]
        return _Response(200, _json_bytes(chunk), headers)

    def _href(self, page: int, per_page: int) -> str:
        pairs = [(k, v) for k, v in self.query_pairs if k not in ("page", "per_page", "private_token")]
        pairs += [("page", str(page)), ("per_page", str(per_page))]
        query = urlencode(sorted(pairs), quote_via=quote)
        return f"{self.base}{self.raw_path}?{query}"


# ---------------------------------------------------------------------- module helpers


def _ok(body: object, status: int = 200) -> _Response:
    return _Response(status, _json_bytes(body), [("Content-Type", "application/json")])


def _fault_response(fault: _Fault) -> _Response:
    if fault.raw is not None:
        return _Response(fault.status, fault.raw, [("Content-Type", fault.content_type)], fault.truncated)
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
        return _Response(429, _RATE_LIMIT_TEXT, headers)
    reason = _REASONS.get(fault.status, "Error")
    return _ok({"message": f"{fault.status} {reason}"}, status=fault.status)


def _pairs_to_params(pairs: list[tuple[str, str]]) -> Json:
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


def _get_int(params: Json, name: str, *, required: bool = False) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise _param_error(f"{name} is missing")
        return None
    if isinstance(value, bool):
        raise _param_error(f"{name} is invalid")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise _param_error(f"{name} is invalid")


def _get_bool(params: Json, name: str) -> bool:
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
    raise _param_error(f"{name} is invalid")


def _get_date(params: Json, name: str) -> date | None:
    """Grape DateTime coercion: empty means "no date"; "YYYY-MM-DD" or an ISO timestamp."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _param_error(f"{name} is invalid")
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError as exc:
        raise _param_error(f"{name} is invalid") from exc


def _parse_user_id(raw: str) -> int:
    if not raw.isdigit():
        raise _param_error("user_id is invalid")
    return int(raw)


def _user_ids_filter(params: Json) -> set[int] | None:
    raw = params.get("user_ids")
    if raw is None or raw == "":
        return None
    values: Iterator[Any] = iter(raw) if isinstance(raw, list) else iter(str(raw).split(","))
    ids: set[int] = set()
    for value in values:
        text = str(value).strip()
        if not text.isdigit():
            raise _param_error("user_ids is invalid")
        ids.add(int(text))
    return ids


def _filter_members(rows: list[tuple[_User, _Membership]], params: Json) -> list[tuple[_User, _Membership]]:
    """The documented ``query`` and ``user_ids`` filters of the members list endpoints."""
    ids = _user_ids_filter(params)
    if ids is not None:
        rows = [r for r in rows if r[0].id in ids]
    query = params.get("query")
    if isinstance(query, str) and query:
        needle = query.lower()
        rows = [r for r in rows if needle in r[0].username.lower() or needle in r[0].name.lower()]
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; prints the base URL on the first line for scripts to read."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--seed-file", help="JSON file with users, tokens, groups, projects, members")
    parser.add_argument("--drip-seconds", type=float, default=0.0, help="hostile: body byte by byte")
    parser.add_argument("--endless-pages", action="store_true", help="hostile: always a next page")
    parser.add_argument("--retry-after", type=int, default=0, help="hostile: every call 429 with this")
    args = parser.parse_args(argv)
    server = GitLabTestServer(args.host, args.port, latency=args.latency)
    server.drip_seconds = args.drip_seconds
    server.endless_pages = args.endless_pages
    if args.retry_after:
        server.rate_limit(10**9, retry_after=args.retry_after)
    if args.seed_file:
        with open(args.seed_file, encoding="utf-8") as fh:
            server.load_seed(json.load(fh))
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    with server:
        print(server.url, flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
