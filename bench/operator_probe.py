"""`reconciler run`, unchanged, plus raw event-loop lag samples.

Usage: `python -m bench.operator_probe FILE run ...`.

The operator already measures its loop lag (`reconciler_operator.context.watch_loop_lag`: a 50 ms
sleep, how late it wakes) but only exports it as a Prometheus histogram with fixed buckets. This
wrapper replaces that coroutine, before the handlers module imports it, with the same measurement
that also keeps every sample (wall-clock time, lag in seconds) and appends them to FILE from a
thread every 200 ms, so the benchmark can compute exact percentiles over any time window. The
histogram is still fed, so both can be compared. Everything else is the real CLI (`reconciler.cli`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import threading
import time
from typing import Any


def install(path: str, interval: float = 0.05) -> None:
    from reconciler_operator import context

    samples: list[tuple[float, float]] = []
    lock = threading.Lock()

    async def watch_loop_lag(interval: float = interval) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(interval)
            lag = max(0.0, loop.time() - started - interval)
            context.LOOP_LAG.observe(lag)
            with lock:
                samples.append((time.time(), lag))

    def flush() -> None:
        with open(path, "a", encoding="utf-8") as fh:
            while True:
                time.sleep(0.2)
                with lock:
                    batch = samples[:]
                    samples.clear()
                if batch:
                    fh.write("".join(f"{ts:.6f} {lag:.6f}\n" for ts, lag in batch))
                    fh.flush()

    context.watch_loop_lag = watch_loop_lag  # type: ignore[assignment]
    threading.Thread(target=flush, name="lag-probe", daemon=True).start()


def _package(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/lib/python3" in filename:
        return "stdlib/" + filename.rsplit("/lib/python3", 1)[1].split("/", 2)[1]
    for root in ("reconciler_operator", "reconciler_api", "reconciler"):
        if f"/{root}/" in filename:
            return root
    return filename


def install_tracemalloc(out: str) -> None:
    """Trace Python allocations; touching OUT.idle.trigger / OUT.after.trigger takes a snapshot, and
    the second writes OUT (JSON): growth since the first, by line and by package."""
    import tracemalloc

    tracemalloc.start(1)
    snaps: dict[str, Any] = {}

    def loop() -> None:
        while True:
            time.sleep(0.2)
            for label in ("idle", "after"):
                trigger = f"{out}.{label}.trigger"
                if not os.path.exists(trigger):
                    continue
                os.remove(trigger)
                gc.collect()
                snap = tracemalloc.take_snapshot().filter_traces(
                    [tracemalloc.Filter(False, tracemalloc.__file__)]
                )
                snaps[label] = snap
                if label == "after" and "idle" in snaps:
                    diff = snap.compare_to(snaps["idle"], "lineno")
                    packages: dict[str, int] = {}
                    for stat in diff:
                        key = _package(stat.traceback[0].filename)
                        packages[key] = packages.get(key, 0) + stat.size_diff
                    report = {
                        "traced_idle_mb": sum(s.size for s in snaps["idle"].statistics("filename")) / 2**20,
                        "traced_after_mb": sum(s.size for s in snap.statistics("filename")) / 2**20,
                        "top_lines": [
                            [
                                f"{st.traceback[0].filename.split('site-packages/')[-1]}:"
                                f"{st.traceback[0].lineno}",
                                round(st.size_diff / 2**20, 2),
                                st.count_diff,
                            ]
                            for st in diff[:15]
                        ],
                        "top_packages": sorted(
                            ([k, round(v / 2**20, 2)] for k, v in packages.items()), key=lambda kv: -kv[1]
                        )[:12],
                    }
                    with open(out, "w", encoding="utf-8") as fh:
                        json.dump(report, fh)
                with open(f"{out}.{label}.done", "w", encoding="utf-8"):
                    pass

    threading.Thread(target=loop, name="tracemalloc-probe", daemon=True).start()


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m bench.operator_probe SAMPLES_FILE run [reconciler run options]")
    install(sys.argv[1])
    if os.environ.get("BENCH_TRACEMALLOC_OUT"):
        install_tracemalloc(os.environ["BENCH_TRACEMALLOC_OUT"])
    sys.argv = ["reconciler", *sys.argv[2:]]
    from reconciler.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
