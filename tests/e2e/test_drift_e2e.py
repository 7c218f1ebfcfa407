"""Drift is visible: a dry-run Reconcile whose plan is not empty is `Drifted=True` (PlanNotApplied,
with the counts) while `Ready` keeps its kstatus meaning, and the operator exports it as a metric;
applying the plan clears it. The real operator against the Kubernetes emulator and the Slack server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler_testing.slack import SlackTestServer
from tests.e2e.conftest import start_operator
from tests.e2e.helpers import slack_reconcile, wait_ready
from tests.kube import KubeApi, condition
from tests.valkey_server import free_port

pytestmark = pytest.mark.e2e

NS = "team-drift"
TOKEN = "xoxb-e2e-drift-token-1122334455"
USERS = ["drift-a@example.com", "drift-b@example.com"]


@pytest.fixture(scope="module")
def drift_metrics(
    kube: KubeApi, slack: SlackTestServer, base_env: dict[str, str], e2e_dir: Path
) -> Iterator[str]:
    kube.add_namespace(NS)
    slack.add_token(TOKEN)
    for user in USERS:
        slack.add_user(user)
    kube.create_secret(NS, "slack-bot", {"token": TOKEN})
    port = free_port()
    process = start_operator(
        "operator-drift", {**base_env, "RECONCILER_OPERATOR_METRICS_PORT": str(port)}, e2e_dir, NS
    )
    yield f"http://127.0.0.1:{port}/metrics"
    process.stop()


def drifted_series(url: str, name: str) -> set[tuple[str, str]]:
    found = set()
    text = httpx.get(url, timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "reconciler_reconcile_condition"
                and labels.get("namespace") == NS
                and labels.get("name") == name
                and labels.get("type") == "Drifted"
                and sample.value == 1
            ):
                found.add((labels["status"], labels["reason"]))
    return found


def wait_drifted_series(url: str, name: str, expected: tuple[str, str], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    seen: set[tuple[str, str]] = set()
    while time.monotonic() < deadline:
        seen = drifted_series(url, name)
        if seen == {expected}:
            return
        time.sleep(0.2)
    raise AssertionError(f"Drifted series of {name}: {seen}, expected {expected}")


def test_a_dry_run_with_changes_is_drifted_until_applied(
    kube: KubeApi, slack: SlackTestServer, drift_metrics: str
) -> None:
    group = [{"handle": "drift-team", "name": "Drift Team", "users": USERS}]
    kube.create_reconcile(slack_reconcile("drifty", NS, slack.api_url, group, dryRun=True))

    obj = wait_ready(kube, NS, "drifty")
    drifted = condition(obj, "Drifted")
    assert (drifted["status"], drifted["reason"]) == ("True", "PlanNotApplied")
    assert drifted["message"].startswith(
        "2 change(s) planned and not applied (dry run): 1 add_users, 1 create_usergroup"
    )
    assert drifted["observedGeneration"] == obj["metadata"]["generation"]
    assert condition(obj, "Ready")["status"] == "True"  # the run worked: kstatus stays Ready
    assert condition(obj, "Stalled")["status"] == "False"
    with pytest.raises(KeyError):
        slack.usergroup("drift-team")  # a dry run writes nothing
    wait_drifted_series(drift_metrics, "drifty", ("True", "PlanNotApplied"))

    kube.patch_reconcile(NS, "drifty", {"spec": {"dryRun": False}})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        obj = kube.get_reconcile(NS, "drifty")
        current = condition(obj, "Drifted") if obj.get("status") else {}
        if current.get("observedGeneration") == obj["metadata"]["generation"]:
            break
        time.sleep(0.2)
    drifted = condition(obj, "Drifted")
    assert (drifted["status"], drifted["reason"]) == ("False", "UpToDate"), drifted
    assert slack.usergroup("drift-team")["name"] == "Drift Team"
    wait_drifted_series(drift_metrics, "drifty", ("False", "UpToDate"))
