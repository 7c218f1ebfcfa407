"""Metrics end to end: a real operator (with its metrics port) and the sidecar, scraped over HTTP.

Every metric the chart's dashboard and alerts read is exported by one of them, and the operator's
per-Reconcile condition series follow the Reconciles: one per Reconcile and type, replaced when a
condition changes, gone when the Reconcile is deleted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler_testing.slack import SlackTestServer
from tests.e2e.conftest import Process, Sidecar, start_operator
from tests.e2e.helpers import is_stalled, slack_reconcile, wait_ready
from tests.kube import KubeApi
from tests.metric_names import chart_file_references, exported
from tests.valkey_server import free_port

pytestmark = pytest.mark.e2e

NS = "team-metrics"
TOKEN = "xoxb-e2e-metrics-token-5566778899"
USER = "metrics-a@example.com"


@pytest.fixture(scope="module")
def metrics_operator(
    kube: KubeApi, slack: SlackTestServer, base_env: dict[str, str], e2e_dir: Path
) -> Iterator[str]:
    kube.add_namespace(NS)
    slack.add_token(TOKEN)
    slack.add_user(USER)
    kube.create_secret(NS, "slack-bot", {"token": TOKEN})
    port = free_port()
    process: Process = start_operator(
        "operator-metrics", {**base_env, "RECONCILER_OPERATOR_METRICS_PORT": str(port)}, e2e_dir, NS
    )
    yield f"http://127.0.0.1:{port}/metrics"
    process.stop()


def scrape(url: str) -> str:
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return response.text


def condition_series(url: str, name: str) -> set[tuple[str, str, str]]:
    """(type, status, reason) of the Reconcile's condition series with value 1."""
    found = set()
    for family in text_string_to_metric_families(scrape(url)):
        for sample in family.samples:
            labels = sample.labels
            ours = labels.get("namespace") == NS and labels.get("name") == name
            if sample.name == "reconciler_reconcile_condition" and ours and sample.value == 1:
                found.add((labels["type"], labels["status"], labels["reason"]))
    return found


def wait_series(url: str, name: str, expected: set[tuple[str, str, str]], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    seen: set[tuple[str, str, str]] = set()
    while time.monotonic() < deadline:
        seen = condition_series(url, name)
        if seen == expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"series of {name}: {sorted(seen)}, expected {sorted(expected)}")


def group(handle: str, users: list[str]) -> list[dict[str, object]]:
    return [{"handle": handle, "name": f"Metrics {handle}", "users": users}]


def test_condition_series_follow_the_reconciles(
    kube: KubeApi, slack: SlackTestServer, metrics_operator: str
) -> None:
    kube.create_reconcile(slack_reconcile("good", NS, slack.api_url, group("metrics-good", [USER])))
    kube.create_reconcile(
        slack_reconcile("bad", NS, slack.api_url, group("metrics-bad", ["nobody@example.com"]))
    )
    wait_ready(kube, NS, "good")
    kube.wait_for(NS, "bad", is_stalled, 30, "Stalled=True")
    wait_series(
        metrics_operator,
        "good",
        {
            ("Ready", "True", "Succeeded"),
            ("Reconciling", "False", "Succeeded"),
            ("Stalled", "False", "Succeeded"),
            ("Drifted", "False", "UpToDate"),
        },
    )
    bad = condition_series(metrics_operator, "bad")
    assert ("Stalled", "True", "UnknownUsers") in bad
    assert ("Ready", "False", "UnknownUsers") in bad
    assert len({series[0] for series in bad}) == len(bad)  # one series per condition type

    kube.patch_reconcile(
        NS, "bad", {"spec": {"slackUsergroups": {"usergroups": group("metrics-bad", [USER])}}}
    )
    wait_ready(kube, NS, "bad")
    wait_series(
        metrics_operator,
        "bad",
        {
            ("Ready", "True", "Succeeded"),
            ("Reconciling", "False", "Succeeded"),
            ("Stalled", "False", "Succeeded"),
            ("Drifted", "False", "UpToDate"),
        },
    )

    kube.delete_reconcile(NS, "good")
    wait_series(metrics_operator, "good", set())


def test_every_metric_of_the_dashboard_and_alerts_is_exported(
    kube: KubeApi, metrics_operator: str, sidecar: Sidecar
) -> None:
    with sidecar.client() as client:  # one long poll, so the sidecar has served one
        client.get("/reconcile/" + "0" * 32, params={"timeout_seconds": 0.1})
    operator_metrics = exported(scrape(metrics_operator))
    sidecar_metrics = exported(scrape(f"{sidecar.url}/metrics"))
    missing = {
        name: sorted(places)
        for name, places in chart_file_references().items()
        if name not in operator_metrics | sidecar_metrics
    }
    assert not missing, f"referenced by the chart but exported by neither process: {missing}"
    assert "reconciler_reconcile_condition" in operator_metrics
    assert "reconciler_operator_leader" in operator_metrics
    for fleet_metric in (
        "reconciler_service_requests_total",
        "reconciler_rate_budget_wait_seconds_total",
        "reconciler_rate_budget_deferred_total",
        "reconciler_shared_reads_total",
    ):
        assert fleet_metric in operator_metrics
    assert "reconciler_api_waiters" in sidecar_metrics
