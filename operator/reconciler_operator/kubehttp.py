"""The operator's own small Kubernetes API calls (Secret reads, a Reconcile's re-read and its status
patches), from worker threads, on the credentials Kopf logged in with.

Over urllib3's kept-alive connection pool, not httpx: about half the client CPU per request (P5
sends one status patch per queued Reconcile, and the operator is GIL-bound), and no INFO log line
per request. urllib3 is already installed for python-gitlab (requests); it verifies TLS with Kopf's
own SSL context (CA, client certificate, `insecure`), and goes through the proxy the environment
names for the API server when Kopf's login trusts the environment, as httpx did.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import kopf
import urllib3

POOL_SIZE = 32
"""Kept-alive connections: more than the run workers and status-mark threads that use them at once."""


class KubeHttpError(Exception):
    """No answer from the API server (connection, TLS, timeout, reset); the message names the kind."""


@dataclass(frozen=True)
class KubeResponse:
    status_code: int
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class KubeHttp:
    def __init__(
        self,
        server: str,
        headers: Mapping[str, str],
        ssl_context: ssl.SSLContext,
        *,
        timeout: float,
        proxy: str | None = None,
    ) -> None:
        self._server = server.rstrip("/")
        self._headers = dict(headers)
        timeouts = urllib3.Timeout(connect=timeout, read=timeout)
        options: dict[str, Any] = {
            "maxsize": POOL_SIZE,
            "timeout": timeouts,
            "retries": False,
            "ssl_context": ssl_context,
        }
        self._pool: urllib3.PoolManager = (
            urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)
        )

    @classmethod
    def from_connection(cls, connection: kopf.ConnectionInfo, *, timeout: float) -> KubeHttp:
        """Kopf's (new) login: server, CA, client certificate and token."""
        proxy = _environment_proxy(connection.server) if connection.trust_env else None
        return cls(
            connection.server,
            connection.as_http_headers(),
            connection.as_ssl_context(),
            timeout=timeout,
            proxy=proxy,
        )

    def get(self, path: str) -> KubeResponse:
        return self._request("GET", path, None, {})

    def patch(self, path: str, *, json: Any, headers: Mapping[str, str]) -> KubeResponse:
        return self._request("PATCH", path, _dumps(json), headers)

    def close(self) -> None:
        self._pool.clear()

    def _request(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> KubeResponse:
        try:
            response = self._pool.request(
                method, self._server + path, body=body, headers={**self._headers, **headers}
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeHttpError(type(exc).__name__) from None
        return KubeResponse(response.status, response.data)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _environment_proxy(server: str) -> str | None:
    """The proxy HTTPS_PROXY/HTTP_PROXY/ALL_PROXY name for `server`, unless NO_PROXY exempts it."""
    parts = urlsplit(server)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy
