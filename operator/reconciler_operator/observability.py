"""Metrics about the Reconciles themselves and about leadership (the dashboard's and alerts' inputs).

- `reconciler_reconcile_condition{namespace,name,type,status,reason}` = 1: each Reconcile's
  conditions as the API server stores them (the kube-state-metrics convention), so "Stalled for 15
  minutes" is a PromQL question. Bounded: one series per Reconcile and condition type; a change of
  status or reason replaces the series, a deleted Reconcile drops its series. Taken from the status
  writes themselves (this operator is the only writer of its Reconciles' status), not from a Kopf
  handler on every watch event: that handler was 11% of the operator's GIL time in P5.
- `reconciler_operator_leader` = 1 while this process works (standalone, or the active Kopf peer),
  0 while Kopf's peering pauses it in favour of another replica.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge

RECONCILE_CONDITION = Gauge(
    "reconciler_reconcile_condition",
    "A Reconcile's condition (1 for the current status and reason; one series per Reconcile and type)",
    ["namespace", "name", "type", "status", "reason"],
)
RUN_ERRORS = Counter(
    "reconciler_operator_run_errors_total",
    "Runs that ended with an error, by its reason (RateLimited: a wait for a service's rate limit)",
    ["integration", "reason"],
)
LEADER = Gauge("reconciler_operator_leader", "1 while this operator works, 0 while Kopf peering pauses it")

PEERING_LOGGER = "kopf._core.engines.peering"
"""Kopf says when it pauses or resumes an operator only in these log lines (it has no hook)."""


class ConditionSeries:
    """The series this process exports, so a changed or deleted Reconcile leaves none behind."""

    def __init__(self, gauge: Gauge = RECONCILE_CONDITION) -> None:
        self._gauge = gauge
        self._current: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
        self._lock = threading.Lock()

    def observe(self, namespace: str, name: str, status: Mapping[str, Any] | None) -> None:
        """Export the conditions of `status` (a Reconcile's), replacing what it exported before."""
        new: dict[str, tuple[str, str]] = {}
        for condition in (status or {}).get("conditions") or []:
            if isinstance(condition, Mapping) and condition.get("type"):
                labels = (str(condition.get("status", "")), str(condition.get("reason", "")))
                new[str(condition["type"])] = labels
        with self._lock:
            old = self._current.get((namespace, name), {})
            if new == old:
                return  # most watch events change no condition (finalizer, annotations, taskId)
            for type_, labels in old.items():
                if new.get(type_) != labels:
                    self._gauge.remove(namespace, name, type_, *labels)
            for type_, labels in new.items():
                self._gauge.labels(namespace, name, type_, *labels).set(1)
            if new:
                self._current[(namespace, name)] = new
            else:
                self._current.pop((namespace, name), None)

    def forget(self, namespace: str, name: str) -> None:
        self.observe(namespace, name, None)


CONDITIONS = ConditionSeries()


def observe_status(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """A status this process wrote to a Reconcile: its conditions now. Every status write carries
    the whole conditions list (a merge patch replaces it whole), so this is what the API server
    stores; a patch without conditions changes none."""
    if "conditions" in status:
        CONDITIONS.observe(namespace, name, status)


def forget(namespace: str, name: str) -> None:
    """The Reconcile is gone (its deletion finished): its series go too."""
    CONDITIONS.forget(namespace, name)


class _PeeringWatch(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(("Pausing operations", "Pausing all operators")):
            LEADER.set(0)
        elif message.startswith("Resuming operations"):
            LEADER.set(1)


def watch_leadership() -> None:
    """Leader until Kopf's peering says it pauses this operator (idempotent)."""
    LEADER.set(1)
    peering = logging.getLogger(PEERING_LOGGER)
    if not any(isinstance(handler, _PeeringWatch) for handler in peering.handlers):
        peering.addHandler(_PeeringWatch())
        if peering.getEffectiveLevel() > logging.INFO:
            peering.setLevel(logging.INFO)  # its pause/resume lines are INFO
