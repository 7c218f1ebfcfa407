"""RECONCILER_PIN_CPU through `reconciler run`: with `auto`, every thread of the running operator
(Kopf's loop, the workers, the status-mark threads) is on one CPU and Reconciles converge as
usual; a CPU the process may not use stops it at start with a message naming the setting."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from reconciler_testing.slack import SlackTestServer
from tests.e2e.conftest import reconciler_command, start_operator
from tests.e2e.helpers import slack_reconcile, unique, wait_ready
from tests.kube import KubeApi

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        len(os.sched_getaffinity(0)) < 2 if hasattr(os, "sched_getaffinity") else True,
        reason="pinning shows only with two CPUs or more",
    ),
]

NS = "tenant-pinned"
TOKEN = "xoxb-pinned-token-7777777777"


def thread_cpus(pid: int) -> set[str]:
    """Each thread's allowed CPUs, as /proc lists them ("1", "0-1")."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                found.add(line.split(":", 1)[1].strip())
    return found


def test_a_pinned_operator_runs_every_thread_on_one_cpu_and_converges(
    kube: KubeApi, slack: SlackTestServer, base_env: dict[str, str], e2e_dir: Path
) -> None:
    kube.add_namespace(NS)
    slack.add_token(TOKEN)
    slack.add_user("pia@example.com")
    kube.create_secret(NS, "slack-bot", {"token": TOKEN})
    process = start_operator("operator-pinned", {**base_env, "RECONCILER_PIN_CPU": "auto"}, e2e_dir, NS)
    try:
        names = [unique("pinned") for _ in range(3)]
        for name in names:
            group = {"handle": unique("pinned"), "name": f"Pinned {name}", "users": ["pia@example.com"]}
            kube.create_reconcile(slack_reconcile(name, NS, slack.api_url, [group]))
        for name in names:
            wait_ready(kube, NS, name, timeout=60)
        cpus = thread_cpus(process.popen.pid)
        assert len(cpus) == 1 and cpus.pop().isdigit(), "every thread on the same single CPU"
        assert "runs on CPU" in process.log()
    finally:
        process.stop()


def test_a_cpu_the_operator_may_not_use_stops_it_at_start(base_env: dict[str, str]) -> None:
    outside = str(max(os.sched_getaffinity(0)) + 1)
    done = subprocess.run(
        [*reconciler_command(), "run", "-n", NS],
        env={**base_env, "RECONCILER_PIN_CPU": outside},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"RECONCILER_PIN_CPU={outside}" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr + done.stdout
