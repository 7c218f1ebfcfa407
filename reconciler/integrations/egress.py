"""HTTP plumbing that connects only through a HostPolicy, for both client libraries.

slack-sdk speaks urllib (http.client), python-gitlab speaks requests (urllib3). Both open their
sockets in one place; these subclasses route that place through `HostPolicy.create_connection`, so
the address checked is the address connected to (TLS still verifies the certificate of the name).
They also carry the run deadline's socket guard (transport.DeadlineGuard). urllib's connections
are kept alive in keepalive.POOL, keyed by the policy, so one checked under an allow-list is only
reused under the same allow-list.
A refused host raises HostNotAllowed, which no retry handler of either library retries.
"""

from __future__ import annotations

import http.client
import socket
import urllib.request
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection as Urllib3HTTPConnection
from urllib3.connection import HTTPSConnection as Urllib3HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from reconciler.integrations.keepalive import POOL, KeepAlivePool
from reconciler.integrations.transport import DeadlineGuard
from reconciler.settings import Settings
from reconciler.tenancy import HostPolicy

# --- urllib (slack-sdk) ---------------------------------------------------------------------------


def _urllib_connection(base: type[http.client.HTTPConnection], policy: HostPolicy) -> Any:
    class Guarded(DeadlineGuard, base):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = policy.create_connection

    return Guarded


class GuardedHTTPHandler(urllib.request.HTTPHandler):
    """Connects through `policy`; with a `pool`, keeps connections alive (keepalive.py)."""

    def __init__(self, policy: HostPolicy, pool: KeepAlivePool | None = None) -> None:
        super().__init__()
        self._connection = _urllib_connection(http.client.HTTPConnection, policy)
        self._policy = policy
        self._pool = pool

    def http_open(self, req: urllib.request.Request) -> Any:
        if self._pool is None:
            return self.do_open(self._connection, req)
        key = ("http", req.host, self._policy.identity)
        return self._pool.open(key, lambda: self._connection(req.host, timeout=req.timeout), req)


class GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    """Connects through `policy`; with a `pool`, keeps connections alive (keepalive.py)."""

    def __init__(self, policy: HostPolicy, context: Any = None, pool: KeepAlivePool | None = None) -> None:
        super().__init__(context=context)
        self._connection = _urllib_connection(http.client.HTTPSConnection, policy)
        self._ssl_context = context
        self._policy = policy
        self._pool = pool

    def https_open(self, req: urllib.request.Request) -> Any:
        if self._pool is None:
            return self.do_open(self._connection, req, context=self._ssl_context)
        # The context object itself, not its id: the key keeps it alive, so no other one gets its id.
        key = ("https", req.host, self._policy.identity, self._ssl_context)
        return self._pool.open(
            key, lambda: self._connection(req.host, timeout=req.timeout, context=self._ssl_context), req
        )


def guarded_opener(
    policy: HostPolicy, context: Any = None, pool: KeepAlivePool | None = POOL
) -> urllib.request.OpenerDirector:
    """An opener like urlopen's, whose connections go through `policy` (no proxy handler) and, with
    a `pool` (by default the process's), stay open for the next request to the same place."""
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        GuardedHTTPHandler(policy, pool),
        GuardedHTTPSHandler(policy, context, pool),
    )


# --- requests / urllib3 (python-gitlab) -----------------------------------------------------------


def _urllib3_connection(base: type[Urllib3HTTPConnection], policy: HostPolicy) -> Any:
    class Guarded(DeadlineGuard, base):  # type: ignore[valid-type,misc]
        def _new_conn(self) -> socket.socket:
            timeout = self.timeout if isinstance(self.timeout, int | float) else None
            try:
                sock = policy.create_connection((self._dns_host, self.port), timeout, self.source_address)
            except TimeoutError as exc:
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from exc
            except OSError as exc:
                raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc
            for option in self.socket_options or ():
                sock.setsockopt(*option)
            return sock

    return Guarded


class GuardedAdapter(HTTPAdapter):
    """A requests adapter whose pools connect only through `policy`."""

    def __init__(self, policy: HostPolicy, **kwargs: Any) -> None:
        self._policy = policy
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        http_pool = type(
            "GuardedHTTPPool",
            (HTTPConnectionPool,),
            {"ConnectionCls": _urllib3_connection(Urllib3HTTPConnection, self._policy)},
        )
        https_pool = type(
            "GuardedHTTPSPool",
            (HTTPSConnectionPool,),
            {"ConnectionCls": _urllib3_connection(Urllib3HTTPSConnection, self._policy)},
        )
        self.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}


def policy_for(settings: Settings) -> HostPolicy | None:
    """The policy a client must connect through, or None where the allow-list is not enforced."""
    return HostPolicy.parse(settings.allowed_hosts) if settings.enforce_allowed_hosts else None
