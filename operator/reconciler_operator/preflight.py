"""Before Kopf starts: can we log in to the cluster and does a Kubernetes API answer there?

Why: without this, a missing or unreachable cluster shows as Kopf's tracebacks retried every minute
forever. `reconciler run` (and `make run`, through `python -m reconciler_operator.preflight`) instead
ends within `RECONCILER_CLUSTER_CONNECT_TIMEOUT_SECONDS` with one line saying what is wrong.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
from typing import Any

import httpx
import kopf

log = logging.getLogger(__name__)

LOCAL_CLUSTER_HELP = """\
reconciler needs a Kubernetes cluster in the current kube context (in-cluster, KUBECONFIG or
~/.kube/config). Get a local one with any of:
  kind create cluster
  minikube start
  k3d cluster create
then run `make run` again. To try the command line without a cluster: make demo"""


class ClusterUnreachable(Exception):
    """No credentials, credentials refused, or no Kubernetes API at the server; the message says which."""


def log_in() -> kopf.ConnectionInfo:
    """The credentials the operator will use, found as its login handler finds them."""
    kwargs: dict[str, Any] = {"logger": log, "settings": kopf.OperatorSettings()}
    try:
        if importlib.util.find_spec("kubernetes") is not None:
            connection = kopf.login_via_client(**kwargs)
        else:
            connection = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    except Exception as exc:  # kopf.LoginError, a broken kubeconfig (OSError, KeyError, YAML), ...
        raise ClusterUnreachable(f"cannot log in to Kubernetes: {_describe(exc)}") from None
    if connection is None or not connection.server:
        raise ClusterUnreachable(
            "no Kubernetes credentials: not in a cluster, KUBECONFIG is unset and there is no ~/.kube/config"
        )
    return connection


def check_cluster(timeout_seconds: float) -> str:
    """Log in and GET /version until a Kubernetes API answers or the time is up; its version, or raises."""
    connection = log_in()
    server = connection.server
    deadline = time.monotonic() + timeout_seconds
    last = "no answer"
    try:
        client = httpx.Client(
            base_url=server,
            headers=connection.as_http_headers(),
            verify=connection.as_ssl_context(),
            trust_env=connection.trust_env,
        )
    except (OSError, ValueError) as exc:  # an unreadable CA or client certificate
        raise ClusterUnreachable(f"cannot log in to Kubernetes at {server}: {_describe(exc)}") from None
    with client:
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                response = client.get("/version", timeout=min(5.0, max(remaining, 0.1)))
            except httpx.HTTPError as exc:
                last = _describe(exc)
                time.sleep(min(1.0, max(deadline - time.monotonic(), 0)))
                continue
            return _version(server, response)
    raise ClusterUnreachable(
        f"cannot reach the Kubernetes API at {server} within {timeout_seconds:g}s ({last}); "
        "check the kube context (kubectl config current-context) or "
        "RECONCILER_CLUSTER_CONNECT_TIMEOUT_SECONDS"
    )


def _version(server: str, response: httpx.Response) -> str:
    if response.status_code in (401, 403):
        raise ClusterUnreachable(
            f"the Kubernetes API at {server} refused the credentials of the current kube context "
            f"(HTTP {response.status_code})"
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict) or "gitVersion" not in body:
        raise ClusterUnreachable(
            f"{server} does not answer like a Kubernetes API server (GET /version: HTTP "
            f"{response.status_code}); check the kube context (kubectl config current-context)"
        )
    return str(body["gitVersion"])


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def main() -> int:
    """`python -m reconciler_operator.preflight`: for `make run`, the reason plus how to get a cluster."""
    from reconciler.logs import redact
    from reconciler.settings import get_settings

    try:
        version = check_cluster(get_settings().cluster_connect_timeout_seconds)
    except ClusterUnreachable as exc:
        print(f"error: {redact(str(exc))}\n\n{LOCAL_CLUSTER_HELP}", file=sys.stderr)
        return 1
    print(f"Kubernetes {version} is reachable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
