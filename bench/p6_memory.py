"""P6: resident memory of the operator process after many Reconciles have each run once.

A fresh world (Slack without latency, RECONCILER_MAX_WORKERS=8): RSS of the `reconciler run`
process (psutil; children included, there are none with RECONCILER_VALKEY_URL set) is read after
startup with 0 Reconciles (the baseline), then N Reconciles are created, all run once and turn
Ready, and RSS is read again after a short settle (and its peak sampled every 0.25 s meanwhile).
When the target is missed, the profiled re-run also traces Python allocations (tracemalloc, through
bench.operator_probe) and reports what grew between the idle and the final snapshot.
"""

from __future__ import annotations

import json
import threading
import time

from bench.common import Config, Dist, Metric, ScenarioResult
from bench.procs import ReadyWatch, rss_mb
from bench.profiling import Profiler
from bench.world import NAMESPACE, OperatorWorld

TARGET_MB = 150.0


def run(cfg: Config, profiler: Profiler | None = None) -> ScenarioResult:
    count = 50 if cfg.quick else 1000
    workers = 8
    settle = 1.0 if cfg.quick else 5.0
    repeats = cfg.repeats(1)
    result = ScenarioResult(
        "P6",
        f"Operator memory after {count} Reconciles ran once",
        params={
            "reconciles": count,
            "max_workers": workers,
            "slack_latency_s": 0,
            "settle_s": settle,
            "repeats": repeats,
        },
    )
    idle: list[float] = []
    after: list[float] = []
    peaks: list[float] = []
    durations: list[float] = []
    for rep in range(repeats):
        world = OperatorWorld(
            cfg.subdir(f"p6-r{rep}"), workers=workers, slack_latency=0.0, trace_memory=profiler is not None
        )
        try:
            assert world.kube is not None and world.operator is not None
            pid = world.operator.pid
            time.sleep(settle)
            idle.append(rss_mb(pid))
            if profiler is not None:
                world.memory_snapshot("idle")
            bodies = world.reconciles("p6", count)
            peak = [idle[-1]]
            done = threading.Event()

            def sample(pid: int = pid, peak: list[float] = peak, done: threading.Event = done) -> None:
                while not done.wait(0.25):
                    peak[0] = max(peak[0], rss_mb(pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            if profiler is not None:
                profiler.start(pid, "P6 operator")
            with ReadyWatch(world.kube, NAMESPACE) as watch:
                first, _ = world.kube.create_many(bodies, concurrency=16)
                last = watch.wait_all({str(b["metadata"]["name"]) for b in bodies}, timeout=120 + count * 0.5)
            if profiler is not None:
                profiler.stop()
            durations.append(last - first)
            time.sleep(settle)
            after.append(rss_mb(pid))
            if profiler is not None and world.memory_file is not None:
                world.memory_snapshot("after")
                memory = json.loads(world.memory_file.read_text())
                memory["label"] = f"P6 operator, Python allocations (tracemalloc) after {count} runs vs idle"
                memory["rss_idle_mb"], memory["rss_after_mb"] = round(idle[-1], 1), round(after[-1], 1)
                profiler.extras.append(memory)
            done.set()
            sampler.join()
            peaks.append(max(peak[0], after[-1]))
        finally:
            world.stop()
    rss = Dist.of(after).median
    base = Dist.of(idle).median
    result.metrics.append(
        Metric(
            name=f"operator RSS after {count} Reconciles ran once",
            unit="MB",
            result=rss,
            target=TARGET_MB,
            baseline=base,
            ratio=rss / base if base else None,
            ratio_label="x idle",
            target_label=f"<= {TARGET_MB:g} MB total",
            per_repeat=after,
            note=f"{(rss - base) * 1024 / count:.0f} KB per Reconcile over the idle operator; peak "
            f"{max(peaks):.1f} MB; all Ready {Dist.of(durations).median:.1f} s after the first create "
            f"({count / Dist.of(durations).median:.0f} Reconciles/s at {workers} workers, no Slack latency)",
        ).judge()
    )
    return result
