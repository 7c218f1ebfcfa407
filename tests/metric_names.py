"""Which metrics the chart's dashboard and alerts use, and which a process exports: so a test can
prove that every panel and alert reads a metric that exists (a typo would only show as no data)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import promql_parser
from prometheus_client.parser import text_string_to_metric_families

GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def promql_metrics(expr: str) -> set[str]:
    """Metric names an expression selects (Grafana's interval variables allowed)."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return set(_selectors(promql_parser.parse(expr)))


def _selectors(node: Any) -> Iterator[str]:
    if isinstance(node, promql_parser.VectorSelector):
        if node.name:
            yield node.name
        return
    for attribute in ("lhs", "rhs", "expr", "param", "vector_selector"):
        child = getattr(node, attribute, None)
        if child is not None:
            yield from _selectors(child)
    for arg in getattr(node, "args", None) or ():
        yield from _selectors(arg)


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            exprs += [target["expr"] for target in inner.get("targets", [])]
    return exprs


def rule_exprs(rule: dict[str, Any]) -> list[str]:
    return [str(r["expr"]) for group in rule["spec"]["groups"] for r in group["rules"]]


def chart_references(docs: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    """Metric name -> where it is used, for the rendered dashboard ConfigMap and PrometheusRule."""
    used: dict[str, set[str]] = {}
    for doc in docs:
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].endswith("-dashboard"):
            exprs = dashboard_exprs(json.loads(doc["data"]["reconciler.json"]))
        elif doc["kind"] == "PrometheusRule":
            exprs = rule_exprs(doc)
        else:
            continue
        for expr in exprs:
            for name in promql_metrics(expr):
                used.setdefault(name, set()).add(f"{doc['kind']}: {expr}")
    return used


def exported(exposition: str) -> set[str]:
    """Every series name a /metrics page can have, also of labelled metrics with no sample yet."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


CHART = Path(__file__).resolve().parents[1] / "deploy" / "helm" / "reconciler"


def template_rule_exprs() -> list[str]:
    """The alerts' expressions as written in the chart's template (no templating inside them; the
    deploy tests check they render unchanged), for tests that do not run helm."""
    text = (CHART / "templates" / "prometheusrule.yaml").read_text()
    return re.findall(r"^\s+expr: (.+)$", text, re.M)


def chart_file_references() -> dict[str, set[str]]:
    """Metric name -> where it is used, from the chart's dashboard file and alert template."""
    dashboard = json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    used: dict[str, set[str]] = {}
    for where, exprs in (("dashboard", dashboard_exprs(dashboard)), ("alert", template_rule_exprs())):
        for expr in exprs:
            for name in promql_metrics(expr):
                used.setdefault(name, set()).add(f"{where}: {expr}")
    return used
