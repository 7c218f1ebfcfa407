"""py-spy on a process under test: record while a scenario runs, then summarise the top frames.

Used only when a scenario misses its target (the scenario is re-run once under the profiler, so the
measured numbers are never taken with a sampler attached). `py-spy record --gil` keeps only samples
of the thread holding the GIL: in a Python process that is where its CPU time goes, and for the
operator it is what keeps the event loop from running.
"""

from __future__ import annotations

import collections
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUR_PREFIXES = ("reconciler/", "reconciler_operator/", "reconciler_api/", "bench/")
_GENERIC = re.compile(
    r"\((threading|asyncio/(base_events|runners|events)|runpy|<frozen runpy>|selectors"
    r"|concurrent/futures/thread"
    r"|typer/|click/|uvicorn/(main|server)|reconciler/cli|reconciler_operator/main|kopf/_core/reactor/running)"
)


def py_spy() -> str | None:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    return exe


@dataclass
class Recording:
    label: str
    pid: int
    path: Path
    popen: subprocess.Popen[bytes]


@dataclass
class Profiler:
    """Attach/detach py-spy to pids; `summaries()` after the scenario."""

    out_dir: Path
    rate: int = 100
    recordings: list[Recording] = field(default_factory=list)
    active: list[Recording] = field(default_factory=list)
    extras: list[dict[str, Any]] = field(default_factory=list)
    """Other diagnostics a scenario attaches to its profile (e.g. tracemalloc growth)."""

    def start(self, pid: int, label: str) -> None:
        exe = py_spy()
        if exe is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
        path = self.out_dir / f"{slug}.txt"
        popen = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(self.rate),
                "--format",
                "raw",
                "--gil",
                "--threads",
                "--nonblocking",
                "--output",
                str(path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        rec = Recording(label, pid, path, popen)
        self.recordings.append(rec)
        self.active.append(rec)

    def stop(self) -> None:
        for rec in self.active:
            if rec.popen.poll() is None:
                rec.popen.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        for rec in self.active:
            try:
                rec.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                rec.popen.kill()
        self.active.clear()

    def summaries(self) -> list[dict[str, Any]]:
        return [summarise(rec.label, rec.path) for rec in self.recordings if rec.path.exists()]


_FRAME = re.compile(r" \([^()]*:\d+\)$")


def _thread_kind(calls: list[str]) -> str:
    """Name a thread by what runs in it when py-spy could not read its name."""
    text = ";".join(calls)
    if (calls and calls[0].startswith("<module>")) or re.search(r"\((kopf|aiohttp|asyncio|uvicorn)/", text):
        return "main thread (event loop)"
    if "concurrent/futures/thread.py" in text:
        return "executor threads"
    if "anyio/" in text or "starlette/concurrency" in text:
        return "anyio worker threads"
    if "LeaseRenewer._run" in text:
        return "lease threads"
    return "other threads"


def _thread_group(name: str) -> str:
    name = re.sub(r"_\d+$", "_*", name)
    name = re.sub(r"-[0-9a-f]{8}$", "-*", name)
    return re.sub(r"\d+$", "*", name) if name.startswith("AnyIO") else name


def _strip_line(frame: str) -> str:
    return re.sub(r":\d+\)$", ")", frame)


def summarise(label: str, path: Path, top: int = 12) -> dict[str, Any]:
    total = 0
    threads: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    libs: collections.Counter[str] = collections.Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        head = frames[0]
        calls = frames[1:] if head.startswith("thread (") else frames
        if calls and not _FRAME.search(calls[0]):  # py-spy knew the thread's name
            thread, calls = calls[0], calls[1:]
        else:
            thread = _thread_kind(calls)
        total += count
        threads[_thread_group(thread)] += count
        if calls:
            leaf[calls[-1]] += count
        seen: set[str] = set()
        for frame in calls:
            key = _strip_line(frame)
            if key in seen or _GENERIC.search(frame):
                continue
            seen.add(key)
            inner = frame[frame.rfind("(") + 1 :]
            if inner.startswith(OUR_PREFIXES):
                ours[key] += count
            else:
                libs[key] += count

    def share(counter: collections.Counter[str]) -> list[list[Any]]:
        return [[name, round(100.0 * n / total, 1)] for name, n in counter.most_common(top)] if total else []

    return {
        "label": label,
        "file": str(path),
        "samples": total,
        "threads": share(threads),
        "top_self": share(leaf),
        "top_ours_inclusive": share(ours),
        "top_libs_inclusive": share(libs),
    }
