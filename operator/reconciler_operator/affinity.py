"""`RECONCILER_PIN_CPU`: keep every thread of the operator on one CPU.

The operator is GIL-bound: its Python work never uses more than one core's worth at a time. With
its threads spread over several cores, every hand-over of the GIL (each Valkey, Slack or API
round trip a worker makes gives it up and takes it back) wakes a thread on another core and
bounces the interpreter's state between caches. On one core the same work took about a fifth less
CPU, and 500 Reconciles created at once were all Ready about a tenth sooner (bench P5). Off by default:
a pinned process stays on its core even when a neighbour keeps that core busy, so pin only where
the operator has a core to itself (docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 0.2
"""How long `auto` watches the allowed CPUs before it picks the idlest."""


class PinError(ValueError):
    """The setting names a CPU this process may not run on."""


def pin_to_one_cpu(setting: str | None) -> int | None:
    """Apply `RECONCILER_PIN_CPU` (None or "": off; "auto": the idlest CPU this process may use;
    a number: that CPU) to every thread of the process; threads started later inherit it. Returns
    the CPU, or None when nothing was pinned (off, or not supported here)."""
    if not setting:
        return None
    if not hasattr(os, "sched_setaffinity"):
        log.warning("RECONCILER_PIN_CPU is set, but this platform cannot pin threads; ignored")
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if setting == "auto":
        cpu = idlest(allowed) if len(allowed) > 1 else allowed[0]
    else:
        cpu = int(setting)
        if cpu not in allowed:
            raise PinError(
                f"RECONCILER_PIN_CPU={setting}: this process may only run on CPU(s) "
                f"{', '.join(map(str, allowed))}; pick one of them, or 'auto'"
            )
    for tid in _threads():
        with contextlib.suppress(ProcessLookupError, PermissionError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, {cpu})
    return cpu


def idlest(cpus: list[int]) -> int:
    """The CPU of `cpus` that was idle the longest over the next SAMPLE_SECONDS (the first one when
    /proc/stat cannot be read)."""
    before = _idle_times()
    time.sleep(SAMPLE_SECONDS)
    after = _idle_times()
    return max(cpus, key=lambda cpu: (after.get(cpu, 0) - before.get(cpu, 0), -cpu))


def _idle_times() -> dict[int, int]:
    """Idle plus iowait ticks per CPU, from /proc/stat."""
    times: dict[int, int] = {}
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return times
    for line in lines:
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit():
            fields = rest.split()
            if len(fields) >= 5:
                times[int(name[3:])] = int(fields[3]) + int(fields[4])
    return times


def _threads() -> list[int]:
    """Every thread of this process (0, the calling one, where /proc is not mounted)."""
    try:
        return [int(entry.name) for entry in Path("/proc/self/task").iterdir()]
    except OSError:
        return [0]
