"""RECONCILER_PIN_CPU: every thread of the operator on one CPU (the GIL-bound process stops handing
the GIL between cores). Pinning runs in a child process, so the test process keeps its CPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from reconciler.settings import Settings
from reconciler_operator.affinity import PinError, idlest, pin_to_one_cpu

ALLOWED = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
needs_two_cpus = pytest.mark.skipif(len(ALLOWED) < 2, reason="pinning shows only with two CPUs or more")

CHILD = """
import json, os, sys, threading
from reconciler_operator.affinity import pin_to_one_cpu
stop = threading.Event()
before = threading.Thread(target=stop.wait)
before.start()
cpu = pin_to_one_cpu(sys.argv[1])
after = threading.Thread(target=stop.wait)
after.start()
tids = [int(t) for t in os.listdir("/proc/self/task")]
print(json.dumps({"cpu": cpu, "threads": [sorted(os.sched_getaffinity(t)) for t in tids]}))
stop.set()
"""


def pinned_child(setting: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, setting], capture_output=True, text=True, timeout=60, check=True
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


@needs_two_cpus
def test_auto_pins_every_thread_old_and_new_to_one_allowed_cpu() -> None:
    result = pinned_child("auto")
    cpu = result["cpu"]
    assert cpu in ALLOWED
    threads = result["threads"]
    assert isinstance(threads, list) and len(threads) >= 3, "main, one started before, one after"
    assert all(affinity == [cpu] for affinity in threads), threads


@needs_two_cpus
def test_a_named_cpu_is_used_and_one_the_process_may_not_use_is_refused() -> None:
    last = ALLOWED[-1]
    assert pinned_child(str(last))["cpu"] == last
    outside = max(ALLOWED) + 1
    with pytest.raises(PinError, match=rf"RECONCILER_PIN_CPU={outside}: .*CPU\(s\) {ALLOWED[0]}"):
        pin_to_one_cpu(str(outside))


def test_unset_pins_nothing_and_the_setting_is_checked() -> None:
    before = os.sched_getaffinity(0) if ALLOWED else None
    assert pin_to_one_cpu(None) is None and pin_to_one_cpu("") is None
    if before is not None:
        assert os.sched_getaffinity(0) == before
    assert Settings(pin_cpu="auto").pin_cpu == "auto" and Settings(pin_cpu="3").pin_cpu == "3"
    with pytest.raises(ValidationError, match="pin_cpu"):
        Settings(pin_cpu="the fast one")


@needs_two_cpus
def test_auto_picks_a_cpu_it_is_allowed() -> None:
    assert idlest(ALLOWED) in ALLOWED
