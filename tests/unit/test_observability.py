"""Condition metrics stay bounded (one series per Reconcile and type), and the leader gauge follows
Kopf's own peering decisions (its real process_peering_event, not a copy of its messages)."""

from __future__ import annotations

import asyncio
import datetime

import kopf
from kopf._cogs.aiokits import aiotoggles
from kopf._core.engines import peering
from prometheus_client import CollectorRegistry, Gauge

from reconciler_operator import observability
from reconciler_operator.observability import LEADER, ConditionSeries


def conditions(**by_type: tuple[str, str]) -> dict[str, object]:
    return {"conditions": [{"type": t, "status": s, "reason": r} for t, (s, r) in by_type.items()]}


def series(registry: CollectorRegistry) -> set[tuple[str, ...]]:
    return {
        tuple(sample.labels[k] for k in ("namespace", "name", "type", "status", "reason"))
        for family in registry.collect()
        for sample in family.samples
        if sample.value == 1
    }


def test_one_series_per_reconcile_and_type() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("c", "c", ["namespace", "name", "type", "status", "reason"], registry=registry)
    metrics = ConditionSeries(gauge)

    metrics.observe("ns", "a", conditions(Ready=("Unknown", "Progressing"), Stalled=("False", "Progressing")))
    metrics.observe("ns", "b", conditions(Ready=("True", "Succeeded")))
    metrics.observe("ns", "a", conditions(Ready=("False", "UnknownUsers"), Stalled=("True", "UnknownUsers")))
    assert series(registry) == {
        ("ns", "a", "Ready", "False", "UnknownUsers"),
        ("ns", "a", "Stalled", "True", "UnknownUsers"),
        ("ns", "b", "Ready", "True", "Succeeded"),
    }

    metrics.observe("ns", "a", conditions(Ready=("True", "Succeeded")))  # Stalled gone from status
    metrics.forget("ns", "b")
    assert series(registry) == {("ns", "a", "Ready", "True", "Succeeded")}
    for _ in range(100):  # flapping adds nothing
        metrics.observe("ns", "a", conditions(Ready=("False", "RateLimited")))
        metrics.observe("ns", "a", conditions(Ready=("True", "Succeeded")))
    assert len(next(iter(registry.collect())).samples) == 1


def test_status_writes_drive_the_series() -> None:
    observability.observe_status("ev", "x", conditions(Ready=("True", "Succeeded")))
    assert observability.RECONCILE_CONDITION.labels("ev", "x", "Ready", "True", "Succeeded")._value.get() == 1
    observability.observe_status("ev", "x", {"taskId": "0" * 32})  # no conditions written: none changed
    assert observability.RECONCILE_CONDITION.labels("ev", "x", "Ready", "True", "Succeeded")._value.get() == 1
    observability.forget("ev", "x")
    sample_keys = {
        tuple(s.labels.values()) for f in observability.RECONCILE_CONDITION.collect() for s in f.samples
    }
    assert not any(key[:2] == ("ev", "x") for key in sample_keys)


async def test_leader_follows_kopf_peering() -> None:
    observability.watch_leadership()
    assert LEADER._value.get() == 1
    settings = kopf.OperatorSettings()
    settings.peering.name = "reconciler"
    settings.peering.priority = 10
    resource = kopf.Resource("kopf.dev", "v1", "clusterkopfpeerings")  # type: ignore[attr-defined]
    conflicts = aiotoggles.Toggle()
    wakeup = asyncio.Event()
    wakeup.set()  # process_peering_event sleeps until then; do not wait here

    async def see(peers: dict[str, dict[str, object]]) -> None:
        event = {"type": "MODIFIED", "object": {"metadata": {"name": "reconciler"}, "status": peers}}
        await peering.process_peering_event(
            raw_event=event,  # type: ignore[arg-type]
            namespace=None,
            resource=resource,
            identity=peering.Identity("me"),
            settings=settings,
            autoclean=False,
            stream_pressure=wakeup,
            conflicts_found=conflicts,
        )

    now = datetime.datetime.now(datetime.UTC).isoformat()
    await see({"me": {"priority": 10, "lastseen": now}, "other": {"priority": 20, "lastseen": now}})
    assert conflicts.is_on() and LEADER._value.get() == 0
    await see({"me": {"priority": 10, "lastseen": now}})
    assert conflicts.is_off() and LEADER._value.get() == 1
