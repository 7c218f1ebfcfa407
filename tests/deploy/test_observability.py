"""The chart's dashboard and alerts: opt-in, discoverable by Grafana's sidecar, every alert with a
runbook section in docs/operations.md, and every query parses as PromQL (the e2e test checks that
the metrics they read are exported)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from tests.deploy.conftest import CHART, REPO
from tests.metric_names import (
    chart_file_references,
    chart_references,
    dashboard_exprs,
    promql_metrics,
    rule_exprs,
    template_rule_exprs,
)

Render = Callable[[str], list[dict[str, Any]]]
ALERTS = {
    "ReconcilerReconcileStalled": "15m",
    "ReconcilerReconcileNotReady": "1h",
    "ReconcilerRateLimited": "10m",
    "ReconcilerEventLoopLag": "10m",
    "ReconcilerDeferredRecords": "10m",
    "ReconcilerNoLeader": "5m",
}


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def test_off_by_default(render: Render) -> None:
    kinds = {d["kind"] for d in render("default")}
    assert "PrometheusRule" not in kinds
    assert not [
        d for d in render("default") if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]
    ]


def test_dashboard_configmap_for_the_grafana_sidecar(render: Render) -> None:
    config_map = one([d for d in render("observability") if d["kind"] == "ConfigMap"], "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Platform"}
    dashboard = json.loads(config_map["data"]["reconciler.json"])
    assert dashboard == json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    titles = {p["title"] for p in dashboard["panels"]}
    for wanted in (
        "Runs by outcome",
        "Reconciles by condition and reason",
        "Rate-limited waits",
        "Event-loop lag",
        "Deferred records",
        "Valkey memory",
        "Long-poll waiters",
    ):
        assert wanted in titles
    for expr in dashboard_exprs(dashboard):
        assert promql_metrics(expr), expr  # parses, and reads at least one metric


def test_alerts_each_with_a_runbook_section(render: Render) -> None:
    rule = one(render("observability"), "PrometheusRule")
    rules = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert {name: r["for"] for name, r in rules.items()} == ALERTS
    operations = (REPO / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", operations, re.M)
    }
    for name, alert in rules.items():
        assert alert["labels"] == {"severity": alert["labels"]["severity"], "team": "platform"}
        url = alert["annotations"]["runbook_url"]
        assert url == f"docs/operations.md#{name.lower()}"
        assert name.lower() in anchors, f"docs/operations.md has no section {name}"
    for expr in rule_exprs(rule):
        assert promql_metrics(expr), expr


def test_the_rendered_chart_uses_what_its_files_say(render: Render) -> None:
    """The e2e test checks the metrics of the chart's files without helm: same queries."""
    docs = render("observability")
    assert rule_exprs(one(docs, "PrometheusRule")) == template_rule_exprs()
    rendered = {
        name: {w.split(": ", 1)[1] for w in places} for name, places in chart_references(docs).items()
    }
    from_files = {
        name: {w.split(": ", 1)[1] for w in places} for name, places in chart_file_references().items()
    }
    assert rendered == from_files


def test_condition_alerts_read_the_condition_metric(render: Render) -> None:
    used = chart_references(render("observability"))
    assert "reconciler_reconcile_condition" in used
    assert any("Stalled" in where for where in used["reconciler_reconcile_condition"])
