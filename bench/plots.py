"""The report's figures (PNG, matplotlib): drawn from each scenario's raw `series`, so
`python -m bench --report-only` redraws them from the JSON without running anything.

- P3: long-poll latency distributions (finish -> answer), the sidecar against the 0.5 s polling
  baseline, as empirical CDFs on a log time axis;
- P1: the operator's event-loop lag over time, busy windows shaded, with the target;
- P5: Reconciles Ready over time for each worker count, against the lower bound (Slack calls x
  latency / workers: all workers waiting on Slack all the time);
- P7: the fleet timeline, Reconciles Ready over time on one rate-limited workspace (shared cache
  and budget on and off), against the tier lower bound (the busiest method's calls at its limit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import ScenarioResult

DPI = 110
SIZE = (8.0, 4.5)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _cdf(values: Sequence[float]) -> tuple[list[float], list[float]]:
    ordered = sorted(values)
    n = len(ordered)
    return ordered, [(i + 1) / n * 100 for i in range(n)]


def plot_long_poll(result: ScenarioResult, path: Path) -> bool:
    ours, base = result.series.get("latencies_ms") or [], result.series.get("baseline_latencies_ms") or []
    if not ours or not base:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(SIZE[0], SIZE[1] + 0.6))
    for values, label, colour in (
        (ours, f"reconciler api: pub/sub wake-up (n={len(ours)})", "tab:blue"),
        (base, f"0.5 s polling baseline (n={len(base)})", "tab:orange"),
    ):
        xs, ys = _cdf([max(v, 0.1) for v in values])
        ax.step(xs, ys, where="post", label=label, color=colour, linewidth=2)
    ax.axvline(100, color="grey", linestyle="--", linewidth=1, label="target p95 <= 100 ms")
    ax.axhline(95, color="lightgrey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("task finish -> answer of the waiting GET (ms, log scale)")
    ax.set_ylabel("requests answered (%)")
    ax.set_ylim(0, 101)
    ax.set_title("P3 long-poll latency: cumulative distribution")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize="small")
    return _save(fig, plt, path)


def plot_loop_lag(result: ScenarioResult, path: Path) -> bool:
    samples = result.series.get("lag") or []
    if not samples:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(SIZE[0], SIZE[1] + 0.6))
    for index, (start, end) in enumerate(result.series.get("busy_windows") or []):
        ax.axvspan(start, end, color="tab:red", alpha=0.12, label="all workers busy" if index == 0 else None)
    floor = 0.05
    ax.plot(
        [t for t, _ in samples],
        [max(lag, floor) for _, lag in samples],
        ".",
        markersize=2.5,
        color="tab:blue",
        label="lag sample (a 50 ms sleep: how late it woke)",
    )
    ax.axhline(20, color="grey", linestyle="--", linewidth=1, label="target p99 <= 20 ms")
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor)
    ax.set_xlabel("time (s); unshaded: idle windows, the baseline")
    ax.set_ylabel("lag (ms, log scale)")
    ax.set_title("P1 operator event-loop lag, idle and while every worker is busy")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize="small")
    return _save(fig, plt, path)


def _convergence_label(timeline: dict[str, Any]) -> str:
    return f"{timeline['workers']} workers{', one CPU' if timeline.get('pinned') else ''}"


def plot_convergence(result: ScenarioResult, path: Path) -> bool:
    timelines = result.series.get("ready_timelines") or []
    if not timelines:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=SIZE)
    colours = ["tab:blue", "tab:green", "tab:purple", "tab:brown"]
    bounds: set[int] = set()  # one lower bound per worker count (pinned or not, it is the same)
    for timeline, colour in zip(timelines, colours, strict=False):
        ready, count, ideal = timeline["ready_after_s"], timeline["count"], timeline["ideal_s"]
        if not ready:
            continue
        ax.step(
            [0.0, *ready],
            list(range(len(ready) + 1)),
            where="post",
            color=colour,
            linewidth=2,
            label=f"{_convergence_label(timeline)}: Ready",
        )
        if timeline["workers"] in bounds:
            continue
        bounds.add(timeline["workers"])
        ax.plot(
            [0, ideal],
            [0, count],
            color="grey",
            linestyle="--",
            linewidth=1,
            label=f"{timeline['workers']} workers: lower bound ({ideal:.1f} s)",
        )
    ax.set_xlabel("time since the first create (s)")
    ax.set_ylabel("Reconciles Ready")
    ax.set_title(f"P5 {timelines[0]['count']} Reconciles applied at once: Ready over time")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, plt, path)


def plot_fleet(result: ScenarioResult, path: Path) -> bool:
    timelines = result.series.get("ready_timelines") or []
    count, bound = result.series.get("count"), result.series.get("lower_bound_s")
    if not timelines or not count or not bound:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(SIZE[0], SIZE[1] + 0.6))
    for timeline, colour in zip(timelines, ["tab:blue", "tab:orange"], strict=False):
        ready = timeline["ready_after_s"]
        if ready:
            ax.step(
                [0.0, *ready],
                list(range(len(ready) + 1)),
                where="post",
                color=colour,
                linewidth=2,
                label=f"Ready, {timeline['label']} (all in {ready[-1]:.1f} s)",
            )
    ax.plot(
        [0, bound],
        [0, count],
        color="grey",
        linestyle="--",
        linewidth=1.5,
        label=f"tier lower bound: {bound:.1f} s ({result.series.get('lower_bound_label', '')})",
    )
    ax.axvline(bound, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("time since the first create (s)")
    ax.set_ylabel("Reconciles Ready")
    ax.set_title(f"P7 fleet: {count} Reconciles on one rate-limited Slack workspace, Ready over time")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, fontsize="small")
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: Path) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


FIGURES: dict[str, tuple[str, str, Callable[[ScenarioResult, Path], bool]]] = {
    "P3": ("p3-long-poll.png", "Long-poll latency against the 0.5 s polling baseline", plot_long_poll),
    "P1": ("p1-loop-lag.png", "Operator event-loop lag while busy", plot_loop_lag),
    "P5": ("p5-ready-timeline.png", "Reconciles Ready over time against the lower bound", plot_convergence),
    "P7": (
        "p7-fleet-timeline.png",
        "Fleet: Reconciles Ready over time against the tier lower bound",
        plot_fleet,
    ),
}


def write_figures(results: list[ScenarioResult], directory: Path) -> list[tuple[str, Path]]:
    """Draw every figure the results have data for; (caption, file) of each one written."""
    written = []
    for result in results:
        entry = FIGURES.get(result.id)
        if entry is None or result.error:
            continue
        name, caption, draw = entry
        if draw(result, directory / name):
            written.append((f"{result.id}: {caption}", directory / name))
    return written
