"""What every scenario shares: the run configuration, statistics, and the result records."""

from __future__ import annotations

import math
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Config:
    """How a scenario should run: sizes (`quick`), repetitions, where to put logs, profiling."""

    quick: bool
    repeat: int | None
    """`--repeat N`; None: each scenario's own default."""
    workdir: Path
    profile: bool
    """Re-run a scenario under py-spy when it misses a target."""
    log: Callable[[str], None] = print

    def repeats(self, default_full: int, default_quick: int = 1) -> int:
        if self.repeat is not None:
            return max(1, self.repeat)
        return default_quick if self.quick else default_full

    def subdir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


# --- statistics ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); q in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = math.ceil(pos)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (pos - low))


@dataclass
class Dist:
    """A distribution summary: what the table shows as `median, p95, p99, min-max`."""

    n: int
    median: float
    p95: float
    p99: float
    min: float
    max: float
    mean: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Dist:
        if not values:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
        return cls(
            n=len(values),
            median=percentile(values, 50),
            p95=percentile(values, 95),
            p99=percentile(values, 99),
            min=float(min(values)),
            max=float(max(values)),
            mean=float(sum(values) / len(values)),
        )


# --- results ---------------------------------------------------------------------------------------

Better = Literal["lower", "higher", "equal"]


@dataclass
class Metric:
    """One row of the table.

    `result` is compared with `target` (`better` says in which direction); `baseline` is what the
    same run measured for the comparison case; `dist` summarises the samples behind `result`
    (pooled over repetitions) and `per_repeat` the value of `result` in each repetition.
    """

    name: str
    unit: str
    result: float
    target: float | None
    better: Better = "lower"
    baseline: float | None = None
    ratio: float | None = None
    ratio_label: str = ""
    """How to read `ratio`: e.g. `x fewer calls` or `x of ideal`."""
    target_label: str = ""
    dist: Dist | None = None
    dist_unit: str = ""
    per_repeat: list[float] = field(default_factory=list)
    note: str = ""
    passed: bool | None = None
    miss_by: str = ""

    def judge(self) -> Metric:
        if self.target is None or math.isnan(self.result):
            self.passed = None if self.target is None else False
            if self.target is not None:
                self.miss_by = "no result"
            return self
        if self.better == "lower":
            self.passed = self.result <= self.target
            over = self.result - self.target
            if not self.passed:
                pct = f" (+{over / self.target:.0%})" if self.target else ""
                self.miss_by = f"{fmt(over, self.unit)} over{pct}"
        elif self.better == "higher":
            self.passed = self.result >= self.target
            if not self.passed:
                short = self.target - self.result
                pct = f" (-{short / self.target:.0%})" if self.target else ""
                self.miss_by = f"{fmt(short, self.unit)} short{pct}"
        else:
            self.passed = self.result == self.target
            if not self.passed:
                self.miss_by = f"{fmt(self.result, self.unit)} != {fmt(self.target, self.unit)}"
        return self


@dataclass
class ScenarioResult:
    id: str
    title: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0
    measured_at: str = ""
    series: dict[str, Any] = field(default_factory=dict)
    """Raw samples the figures are drawn from (bench/plots.py), kept so --report-only can redraw."""

    @property
    def missed(self) -> list[Metric]:
        return [m for m in self.metrics if m.passed is False]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScenarioResult:
        metrics = []
        for raw in data.get("metrics", []):
            raw = dict(raw)
            dist = raw.pop("dist", None)
            metrics.append(Metric(**raw, dist=Dist(**dist) if dist else None))
        rest = {k: v for k, v in data.items() if k != "metrics"}
        return cls(**rest, metrics=metrics)


def fmt(value: float | None, unit: str) -> str:
    """Human formatting of a value with its unit (ms with 1 decimal, MB, s, counts)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "ms":
        return f"{value:.1f} ms" if abs(value) < 100 else f"{value:.0f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit in ("calls", "count", "errors", ""):
        return f"{value:.0f}" + (f" {unit}" if unit else "")
    return f"{value:.3g} {unit}"


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    try:
        import psutil

        info["memory_total_mb"] = round(psutil.virtual_memory().total / 2**20)
        freq = psutil.cpu_freq()
        if freq is not None:
            info["cpu_mhz"] = round(freq.current)
    except Exception:  # noqa: S110 - informational only
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what or 'a condition'}")


def serve_until_stopped(url: str) -> None:
    """For a test server run as a process: announce `url` on stdout's first line, then block until
    SIGTERM, SIGINT, or the parent closing our stdin (so a crashed driver leaves no orphans)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def watch_stdin() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(url, flush=True)
    stop.wait()


def phase2_metrics(
    prefix: str,
    what: str,
    on: dict[str, Any],
    off: dict[str, Any],
    *,
    target: int,
    target_label: str,
    calls: Callable[[dict[str, Any]], str],
) -> list[Metric]:
    """P7's phase 2 (a fleet re-run with nothing to change), cache+budget on vs off: the calls the
    whole fleet made, and the 429 answers (target 0). `calls` formats one side's call counts."""
    return [
        Metric(
            name=f"{prefix}phase 2: nothing changed, all asked again: {what} for the whole fleet",
            unit="calls",
            result=on["phase2"]["calls"],
            baseline=off["phase2"]["calls"],
            ratio=off["phase2"]["calls"] / max(1, on["phase2"]["calls"]),
            ratio_label="x fewer calls",
            target=target,
            target_label=target_label,
            note=(
                f"on: {calls(on['phase2'])}, all handled in {on['phase2_seconds']:.1f} s; "
                f"off: {calls(off['phase2'])}, {off['phase2_seconds']:.1f} s"
            ),
        ).judge(),
        Metric(
            name=f"{prefix}phase 2: HTTP 429 answers (cache+budget on)",
            unit="calls",
            result=on["phase2"]["rate_limited"],
            baseline=off["phase2"]["rate_limited"],
            target=0,
            target_label="0",
            note=f"off: {off['phase2']['rate_limited']}",
        ).judge(),
    ]
