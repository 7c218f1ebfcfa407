"""P5: many Reconciles applied at once: time from the first create to all Ready, vs the ideal.

A fresh world per worker count (Kubernetes API emulator, Valkey, Slack answering every call after
50 ms, `reconciler run -A` with RECONCILER_MAX_WORKERS=W). N slack-usergroups Reconciles (one new
usergroup of 3 users each) are POSTed with 16 requests in flight; a watch records when each turns
Ready (Ready=True for its generation). Ideal = (Slack calls counted by the Slack server during the
run) x 50 ms / W: the time W workers need if they did nothing but wait for Slack. The Slack server
also reports the time-weighted mean of calls in flight: divided by W, how busy the workers kept
Slack (1.0 = the ideal).

Each worker count runs twice, side by side: as installed by default (the operator's threads on any
CPU), and with RECONCILER_PIN_CPU=auto, as docs/scaling.md advises for a large fleet (every thread
on one CPU: the GIL-bound process stops handing the GIL between cores).
"""

from __future__ import annotations

import time

from bench.common import Config, Dist, Metric, ScenarioResult
from bench.procs import ReadyWatch
from bench.profiling import Profiler
from bench.world import NAMESPACE, OperatorWorld

LATENCY = 0.05
TARGET_FACTOR = 1.2


def run(cfg: Config, profiler: Profiler | None = None) -> ScenarioResult:
    count = 20 if cfg.quick else 500
    worker_counts = (8, 32)
    pinnings = (False, True)
    repeats = cfg.repeats(2)
    result = ScenarioResult(
        "P5",
        f"{count} Reconciles applied at once: time to all Ready",
        params={
            "reconciles": count,
            "slack_latency_s": LATENCY,
            "max_workers": list(worker_counts),
            "pin_cpu": ["unset", "auto"],
            "repeats": repeats,
            "create_concurrency": 16,
        },
    )
    for workers, pinned in [(w, p) for w in worker_counts for p in pinnings]:
        how = "operator on one CPU (RECONCILER_PIN_CPU=auto)" if pinned else "default (threads on any CPU)"
        seconds: list[float] = []
        ideals: list[float] = []
        ready_after: list[float] = []
        details: list[str] = []
        for rep in range(repeats):
            world = OperatorWorld(
                cfg.subdir(f"p5-w{workers}{'-pinned' if pinned else ''}-r{rep}"),
                workers=workers,
                slack_latency=LATENCY,
                env_extra={"RECONCILER_PIN_CPU": "auto"} if pinned else None,
            )
            try:
                assert world.kube is not None and world.slack is not None and world.operator is not None
                bodies = world.reconciles("p5", count)
                names = {str(b["metadata"]["name"]) for b in bodies}
                if profiler is not None:
                    profiler.start(world.operator.pid, f"P5 operator {workers} workers, {how}")
                with ReadyWatch(world.kube, NAMESPACE) as watch:
                    world.slack.reset()
                    first, created = world.kube.create_many(bodies, concurrency=16)
                    last_ready = watch.wait_all(names, timeout=60 + count * 4 * LATENCY * 2)
                    stats = world.slack.stats()
                    if rep == 0:
                        ready_after = sorted(round(t - first, 3) for t in watch.ready.values())
                if profiler is not None:
                    profiler.stop()
                assert world.valkey is not None
                valkey_calls = sum(
                    int(v["calls"])
                    for k, v in world.valkey.client().info("commandstats").items()
                    if k.startswith("cmdstat_") and k not in ("cmdstat_info", "cmdstat_ping")
                )
            finally:
                world.stop()
            kube_calls = world.kube.request_counts() if world.kube is not None else {}
            if rep == 0:
                per = {
                    k: v / count
                    for k, v in sorted(kube_calls.items(), key=lambda kv: -kv[1])
                    if v >= count / 2
                }
                result.notes.append(
                    f"{workers} workers, {how}, per Reconcile: {valkey_calls / count:.1f} Valkey commands "
                    "(each command of a "
                    "MULTI/EXEC pipeline counted); Kubernetes API "
                    "requests: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in per.items())
                    + " (watch events and the benchmark's own creates and watch included)"
                )
            took = last_ready - first
            calls = int(stats["calls"])
            ideal = calls * LATENCY / workers
            seconds.append(took)
            ideals.append(ideal)
            ready = sorted(t - first for t in watch.ready.values())
            tenth = ready[len(ready) // 10]
            steady = (len(ready) - len(ready) // 10 - 1) / max(ready[-1] - tenth, 1e-9)
            details.append(
                f"{took:.1f} s (creates took {created - first:.1f} s; first Ready after {ready[0]:.2f} s; "
                f"from the 10th percentile on {steady:.0f} Reconciles/s against the ideal's "
                f"{workers / (calls / count * LATENCY):.0f}/s; "
                f"{calls / count:.2f} Slack calls per run; "
                f"workers kept Slack {stats['mean_inflight'] / workers:.0%} busy, "
                f"max {stats['max_inflight']} "
                f"calls in flight; {count / took:.1f} Reconciles/s)"
            )
            time.sleep(0.5)
        median = Dist.of(seconds).median
        ideal = Dist.of(ideals).median
        result.series.setdefault("ready_timelines", []).append(
            {
                "workers": workers,
                "pinned": pinned,
                "ready_after_s": ready_after,
                "ideal_s": round(ideal, 3),
                "count": count,
            }
        )
        result.metrics.append(
            Metric(
                name=f"{count} Reconciles, {workers} workers, {how}: first create -> all Ready",
                unit="s",
                result=median,
                baseline=ideal,
                ratio=median / ideal if ideal else None,
                ratio_label="x ideal",
                target=TARGET_FACTOR * ideal,
                target_label=f"<= {TARGET_FACTOR:g}x ideal ({TARGET_FACTOR * ideal:.2f} s)",
                dist=Dist.of(seconds) if len(seconds) > 1 else None,
                dist_unit="s",
                per_repeat=seconds,
                note="ideal = Slack calls x 50 ms / workers; per repeat: " + "; ".join(details),
            ).judge()
        )
    return result
