"""Reads an integration's token from the Secret a Reconcile names, at run time. Sync (worker threads)."""

from __future__ import annotations

import base64
import binascii
import threading

import urllib3.exceptions
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from pydantic import SecretStr

from reconciler.errors import CredentialsNotFound, Forbidden, TransientError
from reconciler.logs import register_secret
from reconciler.models.spec import SecretRef


class SecretReader:
    """One kubernetes ApiClient for the process, configured the usual way (in-cluster, KUBECONFIG)."""

    def __init__(self, pool_size: int) -> None:
        self._pool_size = pool_size
        self._api: client.CoreV1Api | None = None
        self._lock = threading.Lock()

    def _core(self) -> client.CoreV1Api:
        with self._lock:
            if self._api is None:
                configuration = client.Configuration()
                try:
                    config.load_incluster_config(client_configuration=configuration)
                except config.ConfigException:
                    config.load_kube_config(client_configuration=configuration)
                configuration.connection_pool_maxsize = max(4, self._pool_size)
                self._api = client.CoreV1Api(client.ApiClient(configuration))
            return self._api

    def read_token(self, namespace: str, ref: SecretRef) -> SecretStr:
        where = f"Secret {namespace}/{ref.name}"
        try:
            secret = self._core().read_namespaced_secret(ref.name, namespace, _request_timeout=15)
        except ApiException as exc:
            if exc.status == 404:
                raise CredentialsNotFound(
                    f"{where} does not exist; create it with the token under key {ref.key!r}"
                ) from None
            if exc.status in (401, 403):
                raise Forbidden(
                    f"the operator may not read {where} (HTTP {exc.status}); check its RBAC"
                ) from None
            raise TransientError(
                "KubernetesUnavailable", f"reading {where} failed: HTTP {exc.status}"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError(
                "KubernetesUnavailable", f"reading {where} failed: {type(exc).__name__}"
            ) from None

        data = secret.data or {}
        if ref.key not in data:
            keys = ", ".join(sorted(data)) or "none"
            raise CredentialsNotFound(
                f"{where} has no key {ref.key!r} (it has: {keys}); set spec.credentials.secretRef.key"
            )
        try:
            token = base64.b64decode(data[ref.key], validate=True).decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsNotFound(
                f"{where} key {ref.key!r} is not valid base64-encoded UTF-8 text"
            ) from None
        if not token:
            raise CredentialsNotFound(f"{where} key {ref.key!r} is empty")
        register_secret(token)
        return SecretStr(token)
