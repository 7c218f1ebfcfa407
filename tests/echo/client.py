"""The thin client: the only HTTP code of the echo integration (GET/PUT/DELETE /items)."""

from __future__ import annotations

import requests
from pydantic import SecretStr

from reconciler.errors import PermanentError, TransientError
from reconciler.integrations.egress import GuardedAdapter, policy_for
from reconciler.settings import Settings


class EchoClient:
    def __init__(self, url: str, token: SecretStr, settings: Settings) -> None:
        self.url = url.rstrip("/")
        self._timeout = settings.http_timeout_seconds
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        policy = policy_for(settings)
        if policy is not None:
            self._session.mount("http://", GuardedAdapter(policy))
            self._session.mount("https://", GuardedAdapter(policy))

    def items(self) -> frozenset[str]:
        answer = self._send("GET", "/items")
        items = answer.json().get("items")
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise TransientError("BadResponse", "echo GET /items: not a list of items")
        return frozenset(items)

    def add(self, item: str) -> None:
        self._send("PUT", f"/items/{item}")

    def remove(self, item: str) -> None:
        self._send("DELETE", f"/items/{item}")

    def close(self) -> None:
        self._session.close()

    def _send(self, method: str, path: str) -> requests.Response:
        try:
            answer = self._session.request(method, f"{self.url}{path}", timeout=self._timeout)
        except requests.RequestException as exc:
            raise TransientError("Unavailable", f"echo {method} {path}: {type(exc).__name__}") from None
        if answer.status_code == 401:
            raise PermanentError("Unauthorized", "the echo token is not accepted")
        if answer.status_code >= 400:
            raise TransientError("Unavailable", f"echo {method} {path}: HTTP {answer.status_code}")
        return answer
