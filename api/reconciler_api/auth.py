"""Who may read what from the sidecar: `RECONCILER_API_AUTH` = kubernetes | token | none.

`kubernetes` works as kube-rbac-proxy and controller-runtime's metrics filter do: the caller's
bearer token goes to a TokenReview, then a SubjectAccessReview asks whether that user may `get`
`reconciles` (group reconciler.dev) in the namespace of the task, or `get` the non-resource URL
`/metrics`. Decisions are cached for `api_auth_cache_seconds`, and concurrent identical questions
share one review (single flight), so 1,000 clients waiting with one token cost one review each way.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx
from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from reconciler.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

AuthMode = Literal["kubernetes", "token", "none"]
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105 - an API path
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
METRICS_PATH = "/metrics"
MAX_CACHED_DECISIONS = 10_000
LOGIN_REFRESH_SECONDS = 60.0
"""Re-read the sidecar's own credentials this often (projected service-account tokens rotate)."""


class AuthConfigError(Exception):
    """The auth settings cannot work; the sidecar refuses to start with this message."""


def resolve_mode(settings: Settings) -> AuthMode:
    """The mode `reconciler api` runs in; AuthConfigError for settings that cannot be meant."""
    token = settings.api_token
    if token is not None and not token.get_secret_value().strip():
        raise AuthConfigError(
            "RECONCILER_API_TOKEN is set but empty; unset it, or set the token callers must send"
        )
    mode: AuthMode = settings.api_auth or ("token" if token is not None else "none")
    if mode == "token" and token is None:
        raise AuthConfigError("RECONCILER_API_AUTH=token needs RECONCILER_API_TOKEN")
    return mode


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: a Kubernetes user (kubernetes mode) or the static token's holder."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)
    key: str = ""
    """A hash of the caller's token: the cache key of its decisions (the token itself is not kept)."""


class Authorizer:
    """`none`: everyone may read everything."""

    async def authenticate(self, token: str | None) -> Caller:
        return Caller(username="anonymous")

    async def may_read(self, caller: Caller, namespace: str) -> bool:
        return True

    async def may_scrape(self, caller: Caller) -> bool:
        return True

    async def aclose(self) -> None:
        return None


class StaticToken(Authorizer):
    """`token`: one shared bearer token; its holder reads every namespace (for use outside a cluster)."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def authenticate(self, token: str | None) -> Caller:
        if token is None or not secrets.compare_digest(token.encode(), self._token):
            raise _unauthenticated("missing or wrong bearer token")
        return Caller(username="static-token")


class _Decisions:
    """A TTL cache of awaitable answers with single flight: one computation per key at a time."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[Any, tuple[float, asyncio.Future[Any]]] = {}

    async def get(self, key: Any, compute: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            self._make_room(now)
            future: asyncio.Future[T] = asyncio.ensure_future(compute())
            entry = (now + self.ttl, future)
            self._entries[key] = entry
        try:
            return await asyncio.shield(entry[1])
        except Exception:
            if self._entries.get(key) is entry:
                del self._entries[key]  # failures are not cached: the next caller asks again
            raise

    def _make_room(self, now: float) -> None:
        if len(self._entries) < MAX_CACHED_DECISIONS:
            return
        for key in [k for k, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key]
        while len(self._entries) >= MAX_CACHED_DECISIONS:
            del self._entries[next(iter(self._entries))]


class KubernetesAccess(Authorizer):
    """`kubernetes`: TokenReview, then SubjectAccessReview, against the cluster the sidecar runs in."""

    def __init__(self, settings: Settings, login: Callable[[], Any] | None = None) -> None:
        self._login = login or _kube_login
        self._timeout = settings.http_timeout_seconds
        self._identities = _Decisions(settings.api_auth_cache_seconds)
        self._decisions = _Decisions(settings.api_auth_cache_seconds)
        self._client: httpx.AsyncClient | None = None
        self._headers: dict[str, str] = {}
        self._logged_in_at = 0.0
        self._login_lock = asyncio.Lock()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def authenticate(self, token: str | None) -> Caller:
        if not token:
            raise _unauthenticated("a Kubernetes bearer token is required")
        key = hashlib.sha256(token.encode()).hexdigest()
        caller: Caller | None = await self._identities.get(key, lambda: self._review_token(token, key))
        if caller is None:
            raise _unauthenticated("the bearer token was not accepted by Kubernetes (TokenReview)")
        return caller

    async def may_read(self, caller: Caller, namespace: str) -> bool:
        attributes = {"namespace": namespace, "verb": "get", "group": "reconciler.dev"}
        attributes["resource"] = "reconciles"
        return await self._allowed(caller, {"resourceAttributes": attributes})

    async def may_scrape(self, caller: Caller) -> bool:
        return await self._allowed(caller, {"nonResourceAttributes": {"path": METRICS_PATH, "verb": "get"}})

    async def _allowed(self, caller: Caller, attributes: dict[str, Any]) -> bool:
        question = (caller.key, repr(sorted(attributes.items())))
        return await self._decisions.get(question, lambda: self._review_access(caller, attributes))

    async def _review_token(self, token: str, key: str) -> Caller | None:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        status = await self._post(TOKEN_REVIEWS, body)
        user = status.get("user") or {}
        if not status.get("authenticated") or not user.get("username"):
            return None
        return Caller(
            username=str(user["username"]),
            uid=str(user.get("uid", "")),
            groups=tuple(str(g) for g in user.get("groups") or ()),
            extra={str(k): [str(v) for v in vs] for k, vs in (user.get("extra") or {}).items()},
            key=key,
        )

    async def _review_access(self, caller: Caller, attributes: dict[str, Any]) -> bool:
        spec: dict[str, Any] = {"user": caller.username, "groups": list(caller.groups), **attributes}
        if caller.uid:
            spec["uid"] = caller.uid
        if caller.extra:
            spec["extra"] = caller.extra
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        status = await self._post(ACCESS_REVIEWS, body)
        return bool(status.get("allowed")) and not status.get("denied")

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        client = await self._logged_in()
        try:
            response = await client.post(path, json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            log.warning("review at the Kubernetes API failed: %s", type(exc).__name__)
            raise _unavailable() from None
        if response.status_code in (401, 403):
            log.error("the sidecar may not create %s (HTTP %s); check its RBAC", path, response.status_code)
            raise _unavailable()
        if response.status_code >= 400:
            log.warning("review at the Kubernetes API answered HTTP %s", response.status_code)
            raise _unavailable()
        try:
            status = response.json().get("status") or {}
        except (ValueError, AttributeError):
            raise _unavailable() from None
        return status if isinstance(status, dict) else {}

    async def _logged_in(self) -> httpx.AsyncClient:
        async with self._login_lock:
            if self._client is None or time.monotonic() - self._logged_in_at > LOGIN_REFRESH_SECONDS:
                try:
                    connection = await run_in_threadpool(self._login)
                except Exception as exc:
                    log.error("the sidecar cannot log in to Kubernetes: %s", exc)
                    raise _unavailable() from None
                if self._client is None:
                    self._client = httpx.AsyncClient(
                        base_url=connection.server,
                        verify=connection.as_ssl_context(),
                        timeout=self._timeout,
                        trust_env=connection.trust_env,
                    )
                self._headers = dict(connection.as_http_headers())
                self._logged_in_at = time.monotonic()
            return self._client


def _kube_login() -> Any:
    from reconciler.doctor.kube import login

    return login()


def _unauthenticated(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _unavailable() -> HTTPException:
    return HTTPException(503, "cannot check the caller's access with the Kubernetes API; try again")


def make_authorizer(settings: Settings) -> Authorizer:
    mode = resolve_mode(settings)
    if mode == "kubernetes":
        return KubernetesAccess(settings)
    if mode == "token":
        assert settings.api_token is not None  # resolve_mode checked it
        return StaticToken(settings.api_token.get_secret_value().strip())
    return Authorizer()
