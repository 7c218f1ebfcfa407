"""HTTP plumbing that connects only through a HostPolicy, for both client libraries.

slack-sdk speaks urllib (http.client), python-gitlab speaks requests (urllib3). Both open their
sockets in one place; these subclasses route that place through `HostPolicy.create_connection`, so
the address checked is the address connected to (TLS still verifies the certificate of the name).
They also carry the run deadline's socket guard (transport.DeadlineGuard).
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
    def __init__(self, policy: HostPolicy) -> None:
        super().__init__()
        self._connection = _urllib_connection(http.client.HTTPConnection, policy)

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)


class GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, policy: HostPolicy, context: Any = None) -> None:
        super().__init__(context=context)
        self._connection = _urllib_connection(http.client.HTTPSConnection, policy)
        self._ssl_context = context

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req, context=self._ssl_context)


def guarded_opener(policy: HostPolicy, context: Any = None) -> urllib.request.OpenerDirector:
    """An opener like urlopen's, whose connections go through `policy` (no proxy handler)."""
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), GuardedHTTPHandler(policy), GuardedHTTPSHandler(policy, context)
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
