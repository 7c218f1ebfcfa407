"""P4: one `reconciler api` process with a crowd of concurrent long-poll clients.

N clients (1,000; 20 with --quick) each wait on their own task with
`GET /reconcile/{id}?timeout_seconds=60` over one aiohttp session without a connection limit; the
tasks finish in random order at random times over a window. Baseline: the same sidecar with 10
clients. The file-descriptor limit is raised in-process (resource.setrlimit) before the sidecar
starts, so the sidecar inherits it. Method: bench/longpoll.py.
"""

from __future__ import annotations

import asyncio

from bench.common import Config, Dist, Metric, ScenarioResult, percentile
from bench.longpoll import make_store, measure
from bench.profiling import Profiler
from bench.sidecars import SidecarWorld

TARGET_MS = 150.0
BASELINE_CLIENTS = 10
LOST_WAKEUP_MS = 1000.0


def run(cfg: Config, profiler: Profiler | None = None) -> ScenarioResult:
    clients, window = (20, 3.0) if cfg.quick else (1000, 8.0)
    settle = 0.5 + clients / 400
    repeats = cfg.repeats(3)
    result = ScenarioResult(
        "P4",
        f"Sidecar with {clients} concurrent long-poll clients",
        params={
            "clients": clients,
            "baseline_clients": BASELINE_CLIENTS,
            "finish_window_s": window,
            "settle_s": settle,
            "repeats": repeats,
        },
    )
    world = SidecarWorld(cfg.subdir("p4"), baseline=False)
    crowd: list[list[float]] = []
    few: list[list[float]] = []
    errors: list[str] = []
    base_errors: list[str] = []
    driver_lag: list[float] = []
    try:
        assert world.api is not None
        store = make_store(world.valkey_url)
        for rep in range(repeats):
            if profiler is not None:
                profiler.start(world.api.pid, f"P4 reconciler api {clients} clients repeat {rep}")
            big = asyncio.run(measure(world.api.url, store, clients, window=window, settle=settle, seed=rep))
            if profiler is not None:
                profiler.stop()
            small = asyncio.run(
                measure(world.api.url, store, BASELINE_CLIENTS, window=window, settle=0.5, seed=100 + rep)
            )
            crowd.append(big.latencies_ms)
            few.append(small.latencies_ms)
            errors += big.errors
            base_errors += small.errors
            driver_lag.append(big.driver_lag_p99_ms)
    finally:
        world.stop()
    pooled = [x for per in crowd for x in per]
    pooled_few = [x for per in few for x in per]
    p99, base_p99 = percentile(pooled, 99), percentile(pooled_few, 99)
    result.metrics.append(
        Metric(
            name=f"finish -> answer p99, {clients} clients",
            unit="ms",
            result=p99,
            target=TARGET_MS,
            baseline=base_p99,
            ratio=p99 / base_p99 if base_p99 else None,
            ratio_label=f"x the {BASELINE_CLIENTS}-client p99",
            target_label=f"<= {TARGET_MS:g} ms",
            dist=Dist.of(pooled),
            dist_unit="ms",
            per_repeat=[percentile(p, 99) for p in crowd],
            note=f"{BASELINE_CLIENTS} clients: median {percentile(pooled_few, 50):.1f} ms, "
            f"p99 {base_p99:.1f} ms",
        ).judge()
    )
    result.metrics.append(
        Metric(
            name=f"errors, {clients} clients",
            unit="errors",
            result=len(errors),
            baseline=len(base_errors),
            target=0,
            better="equal",
            target_label="0",
        ).judge()
    )
    slow = [x for x in pooled if x > LOST_WAKEUP_MS]
    result.metrics.append(
        Metric(
            name=f"answers slower than {LOST_WAKEUP_MS / 1000:g} s, {clients} clients",
            unit="count",
            result=len(slow),
            baseline=sum(1 for per in few for x in per if x > LOST_WAKEUP_MS),
            target=None,
            note="such an answer came from the sidecar's 2 s fallback poll, "
            "not from the finish notification: "
            "a lost wake-up; latencies " + (", ".join(f"{x:.0f} ms" for x in sorted(slow)[:10]) or "none"),
        )
    )
    result.notes.append(
        f"driver event-loop lag p99 per {clients}-client run: "
        f"{', '.join(f'{x:.1f}' for x in driver_lag)} ms (measurement health)"
    )
    if errors:
        result.notes.append("first errors: " + "; ".join(errors[:5]))
    return result
