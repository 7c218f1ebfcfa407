"""P3: sidecar long-poll, time from a task's finish to the answer of a waiting GET.

`GET /reconcile/{id}?timeout_seconds=60` on `reconciler api` (pub/sub wake-up, TaskNotifier) versus
the same request on a tiny FastAPI app that polls the task every 0.5 s (the 0.5 s polling baseline,
bench/baseline_api.py), both over the same Valkey and TaskStore. A few dozen clients, each on its own task,
finishing at random times spread over a window so that they rarely overlap (P4 is the crowd).
Method: bench/longpoll.py.
"""

from __future__ import annotations

import asyncio

from bench.common import Config, Dist, Metric, ScenarioResult, percentile
from bench.longpoll import make_store, measure
from bench.profiling import Profiler
from bench.sidecars import SidecarWorld

TARGET_MS = 100.0


def run(cfg: Config, profiler: Profiler | None = None) -> ScenarioResult:
    clients, window = (20, 3.0) if cfg.quick else (50, 6.0)
    repeats = cfg.repeats(3)
    result = ScenarioResult(
        "P3",
        "Sidecar long-poll: task finish -> answer",
        params={
            "clients_per_repeat": clients,
            "finish_window_s": window,
            "repeats": repeats,
            "timeout_seconds": 60,
        },
    )
    world = SidecarWorld(cfg.subdir("p3"), baseline=True)
    ours: list[list[float]] = []
    base: list[list[float]] = []
    errors: list[str] = []
    driver_lag: list[float] = []
    try:
        assert world.api is not None and world.baseline is not None
        store = make_store(world.valkey_url)
        for rep in range(repeats):
            if profiler is not None:
                profiler.start(world.api.pid, f"P3 reconciler api repeat {rep}")
            run_ours = asyncio.run(
                measure(world.api.url, store, clients, window=window, settle=0.5, seed=rep)
            )
            if profiler is not None:
                profiler.stop()
            run_base = asyncio.run(
                measure(world.baseline.url, store, clients, window=window, settle=0.5, seed=rep)
            )
            ours.append(run_ours.latencies_ms)
            base.append(run_base.latencies_ms)
            errors += run_ours.errors + [f"baseline: {e}" for e in run_base.errors]
            driver_lag += [run_ours.driver_lag_p99_ms, run_base.driver_lag_p99_ms]
    finally:
        world.stop()
    pooled = [x for per in ours for x in per]
    pooled_base = [x for per in base for x in per]
    p95, base_p95 = percentile(pooled, 95), percentile(pooled_base, 95)
    result.metrics.append(
        Metric(
            name="finish -> answer p95",
            unit="ms",
            result=p95,
            target=TARGET_MS,
            baseline=base_p95,
            ratio=base_p95 / p95 if p95 else None,
            ratio_label="x faster than baseline",
            target_label=f"<= {TARGET_MS:g} ms",
            dist=Dist.of(pooled),
            dist_unit="ms",
            per_repeat=[percentile(p, 95) for p in ours],
            note=f"0.5 s polling baseline: median {percentile(pooled_base, 50):.0f} ms, "
            f"p95 {base_p95:.0f} ms, max {max(pooled_base, default=0):.0f} ms",
        ).judge()
    )
    result.metrics.append(
        Metric(
            name="errors (non-200, wrong status, early answer)",
            unit="errors",
            result=len(errors),
            target=0,
            better="equal",
            target_label="0",
        ).judge()
    )
    result.series = {
        "latencies_ms": [round(x, 3) for x in pooled],
        "baseline_latencies_ms": [round(x, 3) for x in pooled_base],
    }
    result.notes.append(
        f"driver event-loop lag p99 per run: {', '.join(f'{x:.1f}' for x in driver_lag)} ms "
        "(measurement health: should stay far below the latencies measured)"
    )
    if errors:
        result.notes.append("first errors: " + "; ".join(errors[:5]))
    return result
