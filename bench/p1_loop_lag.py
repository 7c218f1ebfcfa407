"""P1: the operator's event-loop lag while every worker runs a service whose Slack calls are slow.

Slack answers every call after `latency` seconds; MAX_WORKERS*2 Reconciles are created at once so
that all workers are busy (checked: the Slack server reports how many calls were in flight at most
and on average). The operator runs through bench.operator_probe, which keeps every sample of the
operator's own lag measurement (a 50 ms sleep, how late it wakes), so percentiles are exact; the
Prometheus histogram the operator exports is scraped before/after as a cross-check.
Baseline: the same operator, idle, just before each busy period.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import Config, Dist, Metric, ScenarioResult, percentile
from bench.procs import ReadyWatch, scrape
from bench.profiling import Profiler
from bench.world import NAMESPACE, OperatorWorld

TARGET_MS = 20.0


def read_samples(path: Path) -> list[tuple[float, float]]:
    if not path.exists():
        return []
    samples = []
    for line in path.read_text().splitlines():
        ts, _, lag = line.partition(" ")
        try:
            samples.append((float(ts), float(lag)))
        except ValueError:
            continue
    return samples


def histogram(text: str, name: str = "reconciler_operator_event_loop_lag_seconds") -> dict[float, float]:
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return buckets


def run(cfg: Config, profiler: Profiler | None = None) -> ScenarioResult:
    workers, latency = (2, 0.3) if cfg.quick else (8, 2.0)
    idle_seconds = 2.0 if cfg.quick else 5.0
    repeats = cfg.repeats(3)
    count = workers * 2
    result = ScenarioResult(
        "P1",
        "Operator event-loop lag, all workers busy on slow Slack calls",
        params={
            "max_workers": workers,
            "slack_latency_s": latency,
            "reconciles_per_repeat": count,
            "idle_window_s": idle_seconds,
            "repeats": repeats,
            "lag_probe_interval_s": 0.05,
        },
    )
    world = OperatorWorld(cfg.subdir("p1"), workers=workers, slack_latency=latency, lag_probe=True)
    idle_windows: list[tuple[float, float]] = []
    busy_windows: list[tuple[float, float]] = []
    inflight: list[tuple[int, float]] = []
    hist_before: dict[float, float] = {}
    hist_after: dict[float, float] = {}
    try:
        assert world.slack is not None and world.kube is not None and world.operator is not None
        time.sleep(1.0)  # let startup finish before the first idle window
        for rep in range(repeats):
            idle_start = time.time()
            time.sleep(idle_seconds)
            idle_windows.append((idle_start, time.time()))
            bodies = world.reconciles(f"p1-r{rep}", count)
            if rep == 0:
                hist_before = histogram(scrape(world.metrics_url))
            if profiler is not None:
                profiler.start(world.operator.pid, f"P1 operator repeat {rep}")
            with ReadyWatch(world.kube, NAMESPACE) as watch:
                world.slack.reset()
                busy_start = time.time()
                world.kube.create_many(bodies, concurrency=min(16, count))
                end = watch.wait_all(
                    {str(b["metadata"]["name"]) for b in bodies}, timeout=120 + 10 * latency * count
                )
                stats = world.slack.stats()
            if profiler is not None:
                profiler.stop()
            busy_windows.append((busy_start, end))
            inflight.append((int(stats["max_inflight"]), float(stats["mean_inflight"])))
        hist_after = histogram(scrape(world.metrics_url))
        time.sleep(0.5)  # the probe flushes every 200 ms
        samples = read_samples(world.lag_file) if world.lag_file else []
    finally:
        world.stop()

    def window(win: tuple[float, float]) -> list[float]:
        return [lag * 1000 for ts, lag in samples if win[0] <= ts <= win[1]]

    idle = [x for w in idle_windows for x in window(w)]
    busy_per_repeat = [window(w) for w in busy_windows]
    busy = [x for per in busy_per_repeat for x in per]
    idle_p99 = percentile(idle, 99)
    busy_p99 = percentile(busy, 99)
    result.metrics.append(
        Metric(
            name="loop lag p99 while all workers busy",
            unit="ms",
            result=busy_p99,
            target=TARGET_MS,
            baseline=idle_p99,
            ratio=busy_p99 / idle_p99 if idle_p99 else None,
            ratio_label="x idle",
            target_label=f"<= {TARGET_MS:g} ms",
            dist=Dist.of(busy),
            dist_unit="ms",
            per_repeat=[percentile(p, 99) for p in busy_per_repeat],
            note=f"idle: {Dist.of(idle).n} samples, p99 {idle_p99:.2f} ms, max {Dist.of(idle).max:.2f} ms",
        ).judge()
    )
    origin = samples[0][0] if samples else 0.0
    result.series = {
        "lag": [[round(ts - origin, 3), round(lag * 1000, 3)] for ts, lag in samples],
        "busy_windows": [[round(a - origin, 3), round(b - origin, 3)] for a, b in busy_windows],
        "idle_windows": [[round(a - origin, 3), round(b - origin, 3)] for a, b in idle_windows],
    }
    result.notes.append(
        "Slack calls in flight per repeat (max / time-weighted mean, of "
        f"{workers} workers): " + ", ".join(f"{m} / {a:.1f}" for m, a in inflight)
    )
    result.notes.append(
        "busy windows (first create -> last Ready): " + ", ".join(f"{b - a:.1f} s" for a, b in busy_windows)
    )
    if hist_before and hist_after:
        delta = {le: hist_after.get(le, 0) - hist_before.get(le, 0) for le in hist_after}
        total = delta.get(float("inf"), 0)
        under = delta.get(0.02, 0)
        if total:
            result.notes.append(
                f"cross-check, the operator's own histogram from the first busy window to the last: "
                f"{under:.0f} of {total:.0f} "
                f"samples <= 20 ms ({100 * under / total:.2f}%), {total - delta.get(0.05, 0):.0f} over 50 ms"
            )
    return result
