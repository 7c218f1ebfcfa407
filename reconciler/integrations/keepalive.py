"""Kept-alive HTTP connections for slack-sdk's urllib requests: one TCP (and TLS) handshake per
connection that stays open, instead of one per call.

urllib closes every connection after one answer ("Connection: close"). `KeepAlivePool` keeps it,
idle, for the next request with the same key; egress.py keys it by scheme, host and port, the
HostPolicy's identity and the TLS context, so a connection checked under one allow-list is never
reused under another. A new connection is made by the caller's connection class, so the HostPolicy
check and the run deadline's guard apply to it exactly as without the pool; a reused one is guarded
again by the deadline of the run that reuses it.

Each request reads its whole answer before the connection goes back; a connection whose answer
said close, or whose request failed in any way, is closed. A reused connection the server closed
meanwhile is found before sending (an idle connection has nothing to read) or, when the close races
the request, by a failure before any byte of the answer: that request is sent once more on a fresh
connection (as urllib3 does). Every other failure propagates exactly as urllib raises it.
"""

from __future__ import annotations

import collections
import http.client
import io
import select
import socket
import threading
import time
import urllib.error
import urllib.request
import urllib.response
from collections.abc import Callable, Hashable

from reconciler import deadline

MAX_IDLE_PER_KEY = 16
"""Idle connections kept per key: more than the operator's workers, which each hold one at a time."""
MAX_IDLE_SECONDS = 30.0
"""An idle connection older than this is closed, not reused: servers and load balancers close idle
keep-alive connections after a while (60 s is a common default), and reusing one they just closed
costs a failed send and a retry."""

_STALE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
"""How a reused connection the server already closed fails before any byte of an answer
(http.client's RemoteDisconnected is a ConnectionResetError)."""


class _Stale(Exception):
    """A reused connection failed before any byte of the answer; `error` is what urllib would raise."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _Answer(urllib.response.addinfourl):
    """A whole answer, read off a kept-alive connection, in the form urllib's handlers return."""

    def __init__(self, response: http.client.HTTPResponse, body: bytes, url: str) -> None:
        super().__init__(io.BytesIO(body), response.msg, url, response.status)
        self.msg = response.reason  # urllib puts the reason in .msg (see AbstractHTTPHandler.do_open)


class KeepAlivePool:
    """Idle `http.client` connections by key, shared by every worker thread of the process."""

    def __init__(
        self, max_idle_per_key: int = MAX_IDLE_PER_KEY, max_idle_seconds: float = MAX_IDLE_SECONDS
    ) -> None:
        self.max_idle_per_key = max_idle_per_key
        self.max_idle_seconds = max_idle_seconds
        self._lock = threading.Lock()
        self._idle: dict[Hashable, collections.deque[tuple[http.client.HTTPConnection, float]]] = {}

    def open(
        self,
        key: Hashable,
        connect: Callable[[], http.client.HTTPConnection],
        req: urllib.request.Request,
    ) -> urllib.response.addinfourl:
        """urllib's `do_open` on an idle connection under `key`, or on a new one from `connect`."""
        conn = self._take(key)
        if conn is not None:
            try:
                return self._exchange(key, conn, req, reused=True)
            except _Stale as stale:
                if deadline.current().expired:
                    raise stale.error from None  # the deadline cut it: no second attempt
        return self._exchange(key, connect(), req, reused=False)

    def clear(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for entries in idle.values():
            for conn, _ in entries:
                conn.close()

    def _exchange(
        self, key: Hashable, conn: http.client.HTTPConnection, req: urllib.request.Request, *, reused: bool
    ) -> urllib.response.addinfourl:
        keep = False
        try:
            if reused and conn.sock is not None:  # this request's timeout, not the last one's
                timeout = req.timeout if isinstance(req.timeout, int | float) else socket.getdefaulttimeout()
                conn.sock.settimeout(timeout)
            try:
                conn.request(
                    req.get_method(),
                    req.selector,
                    req.data,
                    _headers(req),
                    encode_chunked=req.has_header("Transfer-encoding"),
                )
            except OSError as err:
                error = urllib.error.URLError(err)  # as urllib's do_open raises it
                raise (_Stale(error) if reused and isinstance(err, _STALE) else error) from err
            try:
                response = conn.getresponse()
            except _STALE as err:
                if reused:
                    raise _Stale(err) from err
                raise
            body = response.read()
            keep = not response.will_close and conn.sock is not None
        finally:
            if keep:
                self._put(key, conn)
            else:
                conn.close()
        return _Answer(response, body, req.get_full_url())

    def _take(self, key: Hashable) -> http.client.HTTPConnection | None:
        now = time.monotonic()
        found: http.client.HTTPConnection | None = None
        closing: list[http.client.HTTPConnection] = []
        with self._lock:
            idle = self._idle.get(key)
            while idle and found is None:
                conn, since = idle.pop()  # the most recently used: the least likely closed by now
                if now - since <= self.max_idle_seconds and not _dropped(conn):
                    found = conn
                else:
                    closing.append(conn)
        for conn in closing:
            conn.close()
        return found

    def _put(self, key: Hashable, conn: http.client.HTTPConnection) -> None:
        # Another run may take it next: this run's deadline must not cut it there.
        deadline.current().release(conn.sock)
        now = time.monotonic()
        closing: list[http.client.HTTPConnection] = []
        with self._lock:
            self._idle.setdefault(key, collections.deque()).append((conn, now))
            for other, idle in list(self._idle.items()):
                while idle and (
                    now - idle[0][1] > self.max_idle_seconds
                    or (other == key and len(idle) > self.max_idle_per_key)
                ):
                    closing.append(idle.popleft()[0])
                if not idle:
                    del self._idle[other]
        for old in closing:
            old.close()


def _headers(req: urllib.request.Request) -> dict[str, str]:
    """The headers urllib's do_open sends, without its "Connection: close"."""
    headers = dict(req.unredirected_hdrs)
    headers.update({k: v for k, v in req.headers.items() if k not in headers})
    return {name.title(): value for name, value in headers.items()}


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle connection has nothing to read: readable means the server closed it (or sent junk)."""
    if conn.sock is None:
        return True
    poller = select.poll()
    poller.register(conn.sock, select.POLLIN)
    return bool(poller.poll(0))


POOL = KeepAlivePool()
"""The process's pool, for every Slack client (egress.guarded_opener)."""
