"""Install the chart into the KUBECONFIG cluster and watch a Reconcile go through the operator.

Skipped unless KUBECONFIG and RECONCILER_CLUSTER_TESTS=1 (see tests/conftest.py). The image must
be available to the cluster: RECONCILER_IMAGE (default reconciler:0.1.0), e.g. after
`docker build -t reconciler:0.1.0 . && kind load docker-image reconciler:0.1.0`.

No Slack or GitLab is needed: the example Reconcile names a Secret that does not exist, which the
operator reports as Ready=False, Stalled=True, reason CredentialsNotFound; the sidecar then serves
the run's task record.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import CHART, REPO, HelmRun

pytestmark = pytest.mark.cluster

EXAMPLE = REPO / "examples" / "slack-usergroups-dryrun.yaml"


def kubectl(
    *args: str, input: str | None = None, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"kubectl {' '.join(args)}: {result.stderr}")
    return result


@pytest.fixture(scope="module")
def release(helm_run: HelmRun) -> Iterator[dict[str, str]]:
    if not shutil.which("kubectl"):
        pytest.skip("kubectl not on PATH")
    suffix = uuid.uuid4().hex[:6]
    names = {"release": "reconciler", "namespace": f"reconciler-{suffix}", "watched": f"team-{suffix}"}
    repository, _, tag = os.environ.get("RECONCILER_IMAGE", "reconciler:0.1.0").rpartition(":")
    kubectl("create", "namespace", names["watched"])
    kubectl("apply", "--server-side", "-f", str(REPO / "deploy" / "crds"))
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "watchNamespaces": [names["watched"]],
    }
    result = helm_run.run(
        "install",
        names["release"],
        str(CHART),
        "--namespace",
        names["namespace"],
        "--create-namespace",
        "--wait",
        "--timeout",
        "5m",
        values=values,
    )
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        yield names
    finally:
        # Reconciles first: their finalizer needs the operator.
        kubectl(
            "delete", "reconciles", "--all", "-n", names["watched"], "--wait", "--timeout=120s", check=False
        )
        helm_run.run("uninstall", names["release"], "--namespace", names["namespace"], "--wait")
        kubectl("delete", "namespace", names["namespace"], names["watched"], "--wait=false", check=False)


def test_install_and_reconcile(release: dict[str, str]) -> None:
    ns = release["watched"]
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"]["namespace"] = ns
    manifest["spec"]["credentials"]["secretRef"]["name"] = "no-such-secret"
    name = manifest["metadata"]["name"]
    kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))

    kubectl("wait", f"rec/{name}", "-n", ns, "--for=condition=Stalled", "--timeout=180s")
    kubectl("wait", f"rec/{name}", "-n", ns, "--for=condition=Ready=False", "--timeout=10s")
    rec: dict[str, Any] = json.loads(kubectl("get", f"rec/{name}", "-n", ns, "-o", "json").stdout)
    ready = next(c for c in rec["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "CredentialsNotFound", ready
    assert rec["status"]["observedGeneration"] == rec["metadata"]["generation"]
    assert "operator.reconciler.dev/finalizer" in rec["metadata"]["finalizers"]

    # The sidecar serves the run's task record (from inside the pod: no port-forward needed), to a
    # caller whose Kubernetes token may `get` reconciles there: the pod's own ServiceAccount.
    url = f"http://127.0.0.1:8080/reconciles/{ns}/{name}"
    script = (
        "import urllib.request; "
        "t = open('/var/run/secrets/kubernetes.io/serviceaccount/token').read().strip(); "
        f"r = urllib.request.Request({url!r}, headers={{'Authorization': 'Bearer ' + t}}); "
        "print(urllib.request.urlopen(r, timeout=10).read().decode())"
    )
    out = kubectl(
        "exec",
        "-n",
        release["namespace"],
        f"deploy/{release['release']}",
        "-c",
        "api",
        "--",
        "python",
        "-c",
        script,
    ).stdout
    assert rec["status"]["taskId"] in out
