"""Faults: a dead Valkey and a killed operator must not lose a run's outcome or apply anything twice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from reconciler_testing.slack import SlackTestServer
from tests.e2e.conftest import Process, Sidecar, start_operator, start_sidecar
from tests.e2e.helpers import apply_group, wait_ready
from tests.kube import KubeApi, condition
from tests.valkey_server import ValkeyProcess

pytestmark = pytest.mark.e2e

NS = "team-other"
TOKEN = "xoxb-faults-token-5555555555"


@dataclass
class World:
    kube: KubeApi
    slack: SlackTestServer
    valkey: ValkeyProcess
    operator: Process
    sidecar: Sidecar
    env: dict[str, str]
    log_dir: Path

    def restart_operator(self) -> None:
        self.operator.popen.kill()
        self.operator.popen.wait()
        self.operator = start_operator("operator-faults-2", self.env, self.log_dir, NS)


@pytest.fixture(scope="module")
def world(kube: KubeApi, slack: SlackTestServer, base_env: dict[str, str], e2e_dir: Path) -> Iterator[World]:
    valkey = ValkeyProcess(e2e_dir / "valkey-faults", appendonly=True).start()
    env = {
        **base_env,
        "RECONCILER_VALKEY_URL": valkey.url,
        "RECONCILER_LOCK_TTL_SECONDS": "4",
        # The killed operator's shared-read lock is waited out for this long (20 s by default).
        "RECONCILER_SHARED_READ_WAIT_SECONDS": "3",
        "RECONCILER_CACHE_TIMEOUT_SECONDS": "0.5",
    }
    slack.add_token(TOKEN)
    slack.add_user("erin@example.com")
    kube.create_secret(NS, "slack-bot", {"token": TOKEN})
    operator = start_operator("operator-faults", env, e2e_dir, NS)
    sidecar = start_sidecar("api-faults", env, e2e_dir)
    w = World(kube, slack, valkey, operator, sidecar, env, e2e_dir)
    yield w
    w.operator.stop()
    w.sidecar.process.stop()
    valkey.stop()


def creates_of(slack: SlackTestServer, handle: str) -> int:
    return sum(
        1 for c in slack.write_calls() if c.method == "usergroups.create" and c.params.get("handle") == handle
    )


def test_valkey_down_before_a_run(world: World) -> None:
    kube, slack = world.kube, world.slack
    world.valkey.stop()
    try:
        name, handle = apply_group(kube, slack.api_url, NS, "nocache", ["erin@example.com"])
        obj = kube.wait_for(NS, name, lambda o: condition(o, "Ready").get("reason") == "CacheUnavailable", 30)
        assert condition(obj, "Ready")["status"] == "False"
        assert condition(obj, "Stalled")["status"] == "False"  # transient: retried, not stalled
        assert condition(obj, "Reconciling")["status"] == "True"
        assert creates_of(slack, handle) == 0  # nothing applied without the lock
        with httpx.Client(base_url=world.sidecar.url, timeout=10) as http:
            assert http.get("/healthz").status_code == 200
            assert http.get("/readyz").status_code == 503
            assert http.get("/reconcile/" + "a" * 32).status_code == 503
            assert http.get(f"/reconciles/{NS}/{name}").status_code == 503
    finally:
        world.valkey.start()
    obj = wait_ready(kube, NS, name, timeout=40)
    assert creates_of(slack, handle) == 1
    with httpx.Client(base_url=world.sidecar.url, timeout=10) as http:
        assert http.get("/readyz").status_code == 200
        assert http.get(f"/reconcile/{obj['status']['taskId']}").json()["status"] == "success"


def test_valkey_dies_during_a_run_and_the_outcome_is_written_later(world: World) -> None:
    kube, slack = world.kube, world.slack
    slack.latency = 0.7
    try:
        name, handle = apply_group(kube, slack.api_url, NS, "midrun", ["erin@example.com"])
        _wait_running(world, name, planned=True)  # the targets are claimed (that needs Valkey)
        world.valkey.stop()
        obj = wait_ready(kube, NS, name, timeout=30)  # status does not depend on Valkey
    finally:
        slack.latency = 0.0
        if world.valkey.process is None:
            world.valkey.start()
    task_id = obj["status"]["taskId"]
    deadline = time.monotonic() + 20
    record: dict[str, object] = {}
    with httpx.Client(base_url=world.sidecar.url, timeout=10) as http:
        while time.monotonic() < deadline:
            response = http.get(f"/reconcile/{task_id}")
            if response.status_code == 200 and response.json()["status"] == "success":
                record = response.json()
                break
            time.sleep(0.2)
    assert record, "the finished record never reached Valkey"
    assert record["applied"] == 2
    assert creates_of(slack, handle) == 1


def test_operator_killed_mid_run(world: World) -> None:
    kube, slack = world.kube, world.slack
    slack.latency = 0.7
    try:
        name, handle = apply_group(kube, slack.api_url, NS, "killed", ["erin@example.com"])
        interrupted = _wait_running(world, name)
        world.restart_operator()
    finally:
        slack.latency = 0.0
    obj = kube.wait_for(
        NS,
        name,
        lambda o: condition(o, "Ready").get("status") == "True" and o["status"].get("taskId") != interrupted,
        60,
        "Ready after restart",
    )
    assert set(slack.usergroup(handle)["users"]) and creates_of(slack, handle) == 1
    with httpx.Client(base_url=world.sidecar.url, timeout=10) as http:
        old = http.get(f"/reconcile/{interrupted}").json()
        recent = http.get(f"/reconciles/{NS}/{name}").json()["recent"]
    assert old["status"] == "failed" and old["errors"][-1]["reason"] == "Interrupted"
    assert recent[0] == obj["status"]["taskId"] and interrupted in recent


def _wait_running(world: World, name: str, *, planned: bool = False) -> str:
    """The id of the run in progress; with `planned`, once its plan is recorded (before any write)."""
    with httpx.Client(base_url=world.sidecar.url, timeout=10) as http:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            response = http.get(f"/reconciles/{NS}/{name}")
            latest = (response.json()["latest"] or {}) if response.status_code == 200 else {}
            if latest.get("status") == "running" and (latest.get("actions") or not planned):
                return str(latest["task_id"])
            time.sleep(0.05)
    raise AssertionError("the run never started")
