"""Kubernetes access for `reconciler doctor`: log in as the operator would, then plain HTTP (httpx).

The login is Kopf's own (in-cluster service account, KUBECONFIG / ~/.kube/config, or the official
client for exec-plugin kubeconfigs when it is installed), so doctor sees the cluster exactly as
`reconciler run` would with the same environment.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import kopf

log = logging.getLogger(__name__)

CRD_NAME = "reconciles.reconciler.dev"
SSAR_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


class KubeUnavailable(Exception):
    """No credentials, or the API server cannot be reached: the message says which."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def login() -> kopf.ConnectionInfo:
    """The first login that works, in the order Kopf's operator tries them."""
    settings = kopf.OperatorSettings()
    try:
        if importlib.util.find_spec("kubernetes") is not None:
            connection = kopf.login_via_client(logger=log, settings=settings)
        else:
            connection = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
                settings=settings
            )
    except Exception as exc:  # Kopf's LoginError, a bad kubeconfig, a failing exec plugin, ...
        raise KubeUnavailable(f"cannot log in to Kubernetes: {type(exc).__name__}: {exc}") from None
    if connection is None:
        raise KubeUnavailable(
            "no Kubernetes credentials: not in a pod, and no kubeconfig (set KUBECONFIG or create "
            "~/.kube/config, e.g. with `kind create cluster`)"
        )
    return connection


class Kube:
    """A few GETs and access reviews against one API server; every call has a timeout."""

    def __init__(self, connection: kopf.ConnectionInfo, timeout: float = 10.0) -> None:
        self.server = connection.server
        self._http = httpx.Client(
            base_url=connection.server,
            headers=connection.as_http_headers(),
            verify=connection.as_ssl_context(),
            timeout=timeout,
            trust_env=connection.trust_env,
        )

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Answer:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise KubeUnavailable(
                f"cannot reach the API server at {self.server}: {type(exc).__name__}: {exc}"
            ) from None
        try:
            parsed = response.json()
        except ValueError:
            parsed = {}
        return Answer(response.status_code, parsed if isinstance(parsed, dict) else {})

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def version(self) -> str:
        answer = self.get("/version")
        if answer.status >= 400:
            raise KubeUnavailable(
                f"the API server at {self.server} answered HTTP {answer.status} to /version"
            )
        return str(answer.body.get("gitVersion") or "unknown version")

    def crd(self) -> Answer:
        """The installed CRD (404: none). Listed by name, not read: the operator's RBAC has list and
        watch on CRDs but not get, and doctor should work with the operator's credentials."""
        answer = self.get(
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions?fieldSelector=metadata.name%3D{CRD_NAME}"
        )
        if answer.status >= 400:
            return answer
        items = [
            i for i in answer.body.get("items") or [] if (i.get("metadata") or {}).get("name") == CRD_NAME
        ]
        return Answer(200, items[0]) if items else Answer(404, {})

    def reconcile(self, namespace: str, name: str) -> Answer:
        return self.get(
            f"/apis/reconciler.dev/v1alpha1/namespaces/{quote(namespace)}/reconciles/{quote(name)}"
        )

    def secret(self, namespace: str, name: str) -> Answer:
        return self.get(f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}")

    def can(self, verb: str, group: str, resource: str, namespace: str | None) -> tuple[bool, str]:
        """SelfSubjectAccessReview: may the caller `verb` the resource (`reconciles/status`: a
        subresource) in `namespace` (None: in every namespace)? Returns (allowed, the reason given)."""
        plural, _, subresource = resource.partition("/")
        attributes: dict[str, str] = {"verb": verb, "group": group, "resource": plural}
        if subresource:
            attributes["subresource"] = subresource
        if namespace:
            attributes["namespace"] = namespace
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        answer = self.request("POST", SSAR_PATH, review)
        if answer.status >= 400:
            message = answer.body.get("message") or f"HTTP {answer.status}"
            return False, f"the access review itself failed: {message}"
        status = answer.body.get("status") or {}
        return bool(status.get("allowed")), str(status.get("reason") or "")
