"""Reads an integration's token from the Secret a Reconcile names, at run time. Sync (worker threads).

It uses the very credentials Kopf logged in with (a `kopf.ConnectionInfo`, renewed whenever Kopf
re-logs in), over kubehttp (urllib3): no second Kubernetes client library in the process, which
would cost about 50 MB of memory for one GET.
"""

from __future__ import annotations

import threading
from urllib.parse import quote

import kopf
from pydantic import SecretStr

from reconciler.credentials import token_from_secret
from reconciler.errors import CredentialsNotFound, Forbidden, TransientError
from reconciler.models.spec import SecretRef
from reconciler.tenancy import check_credentials_label
from reconciler_operator.kubehttp import KubeHttp, KubeHttpError


class SecretReader:
    """The operator's TokenSource: each read is one GET of the Secret, on Kopf's current login."""

    def __init__(self, timeout_seconds: float = 15.0) -> None:
        self._timeout = timeout_seconds
        self._client: KubeHttp | None = None
        self._lock = threading.Lock()

    def use(self, connection: kopf.ConnectionInfo) -> None:
        """Adopt Kopf's (new) login: server, CA, client certificate and token."""
        client = KubeHttp.from_connection(connection, timeout=self._timeout)
        with self._lock:
            old, self._client = self._client, client
        if old is not None:
            old.close()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def http(self) -> KubeHttp | None:
        """The client on Kopf's current login (None before the first login), for other small reads."""
        with self._lock:
            return self._client

    def read_token(self, namespace: str, ref: SecretRef) -> SecretStr:
        where = f"Secret {namespace}/{ref.name}"
        with self._lock:
            client = self._client
        if client is None:
            raise TransientError("KubernetesUnavailable", "the operator has not logged in to Kubernetes yet")
        try:
            response = client.get(f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(ref.name)}")
        except KubeHttpError as exc:
            raise TransientError("KubernetesUnavailable", f"reading {where} failed: {exc}") from None
        if response.status_code == 404:
            raise CredentialsNotFound(
                f"{where} does not exist; create it with the token under key {ref.key!r}"
            )
        if response.status_code in (401, 403):
            raise Forbidden(
                f"the operator may not read {where} (HTTP {response.status_code}); check its RBAC"
            )
        if response.status_code >= 400:
            raise TransientError(
                "KubernetesUnavailable", f"reading {where} failed: HTTP {response.status_code}"
            )
        try:
            secret = response.json()
            labels = (secret.get("metadata") or {}).get("labels")
        except (ValueError, AttributeError):
            raise TransientError("KubernetesUnavailable", f"reading {where} gave no Secret") from None
        check_credentials_label(labels, where)  # before its data is even decoded
        return token_from_secret(secret, ref, where)
