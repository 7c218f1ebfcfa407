"""Bounds every client's HTTP shares: how long a rate limit may be waited out in place, and the run
deadline on the sockets of slack-sdk (urllib) and python-gitlab (requests/urllib3).

Both libraries build their connections themselves, so the hook is the connection class
(`DeadlineGuard`, also mixed into egress.py's host-checked ones): it registers its socket with the
run's deadline (`reconciler.deadline`) just before it reads an answer, which lets the deadline cut
a body that drips in one byte at a time.
"""

from __future__ import annotations

import email.utils
import functools
import http.client
import socket
import time
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import urllib3
import urllib3.connection
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from reconciler.deadline import current
from reconciler.errors import RateLimited
from reconciler.integrations.keepalive import POOL
from reconciler.settings import Settings

# --- rate limits: wait a little in place, or give the worker back ---------------------------------


def retry_after_seconds(headers: Mapping[str, Any] | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds (delta-seconds or an HTTP date); None if absent or unreadable."""
    raw: Any = None
    for key, value in (headers or {}).items():
        if str(key).lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) else value
            break
    if raw is None:
        return None
    text = str(raw).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (now if now is not None else datetime.now(UTC).timestamp())
    return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable


def inline_wait(wait: float | None, what: str, settings: Settings) -> float:
    """How long a worker may sleep for this rate limit, or RateLimited when it must not.

    A wait longer than `rate_limit_inline_wait_seconds`, or than what is left of the run's deadline,
    ends the run: the operator reschedules it for then (capped at `retry_after_max_seconds`), so a
    worker never sleeps through a long limit and a server cannot park a Reconcile for a day.
    """
    seconds = 1.0 if wait is None else wait
    if seconds <= settings.rate_limit_inline_wait_seconds and seconds < current().remaining():
        return seconds
    capped = max(1.0, min(seconds, settings.retry_after_max_seconds))
    raise RateLimited(
        f"{what} is rate limited: the service asked to wait {seconds:.0f}s; the run gave its worker back "
        f"and tries again in {capped:.0f}s",
        retry_after=capped,
    )


def cap_retry_after(error: RateLimited, settings: Settings) -> RateLimited:
    """A RateLimited built from a service's answer, with its Retry-After capped."""
    if error.retry_after is not None:
        error.retry_after = max(1.0, min(error.retry_after, settings.retry_after_max_seconds))
    return error


# --- connections whose sockets the deadline can cut (urllib for slack-sdk, urllib3 for python-gitlab)


class DeadlineGuard:
    """Mixin for an http.client or urllib3 connection class: registers the socket with the run's
    deadline just before reading an answer (egress.py's host-checked connections use it too)."""

    sock: Any

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _guard(self.sock)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _DeadlineHTTPConnection(DeadlineGuard, http.client.HTTPConnection):
    pass


class _DeadlineHTTPSConnection(DeadlineGuard, http.client.HTTPSConnection):
    pass


class _DeadlineHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> Any:
        if _through_proxy(req):
            return self.do_open(_DeadlineHTTPConnection, req)
        connect = functools.partial(_DeadlineHTTPConnection, req.host, timeout=req.timeout)
        return POOL.open(("http", req.host, None), connect, req)


class _DeadlineHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, context: Any = None) -> None:
        super().__init__(context=context)
        self._ssl_context = context

    def https_open(self, req: urllib.request.Request) -> Any:
        if _through_proxy(req):
            return self.do_open(_DeadlineHTTPSConnection, req, context=self._ssl_context)
        connect = functools.partial(
            _DeadlineHTTPSConnection, req.host, timeout=req.timeout, context=self._ssl_context
        )
        return POOL.open(("https", req.host, None, self._ssl_context), connect, req)


def _through_proxy(req: urllib.request.Request) -> bool:
    """A request the environment's proxy carries: sent as urllib sends it, on a connection of its own."""
    return req.has_proxy() or bool(getattr(req, "_tunnel_host", None))


def deadline_opener(context: Any = None) -> urllib.request.OpenerDirector:
    """An opener like urlopen's (proxies from the environment included) whose connections the run
    deadline can cut, kept alive (keepalive.POOL, under keys of their own: no allow-list checked
    them) unless a proxy carries them; for slack-sdk where no host allow-list applies (egress.py's
    opener does both)."""
    return urllib.request.build_opener(_DeadlineHTTPHandler(), _DeadlineHTTPSHandler(context))


class _DeadlineHTTPConnection3(DeadlineGuard, urllib3.connection.HTTPConnection):
    pass


class _DeadlineHTTPSConnection3(DeadlineGuard, urllib3.connection.HTTPSConnection):
    pass


class _DeadlineHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection3


class _DeadlineHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection3


_POOLS = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}


class DeadlineRetry(Retry):
    """urllib3's retry of connection errors and 5xx, which stops retrying once the run's deadline passed."""

    def is_exhausted(self) -> bool:
        return current().expired or super().is_exhausted()


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter with connections (direct or through a proxy) that the run deadline can cut;
    for python-gitlab where no host allow-list applies (egress.GuardedAdapter does both)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> urllib3.ProxyManager:
        manager: urllib3.ProxyManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager


def _guard(sock: object) -> None:
    if isinstance(sock, socket.socket):
        current().guard(sock)


def sleep_within_deadline(seconds: float) -> None:
    """Sleep, but never past the run's deadline."""
    time.sleep(max(0.0, min(seconds, current().remaining())))
