"""Reliability with the real operator, a real valkey-server and the Slack test server: a full Valkey,
a run queued behind another, the running task in status (issue #11). Own namespace, Valkey and Slack
server, so that filling Valkey or slowing Slack does not disturb the other e2e modules."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import valkey

from reconciler.cache import ValkeyCache
from reconciler.models.task import TaskRecord
from reconciler.tasks import TaskStore
from reconciler_operator.conditions import STATUS_BUDGET_BYTES
from reconciler_testing.slack import SlackTestServer
from tests.e2e.conftest import Process, start_operator
from tests.e2e.helpers import apply_group, unique, wait_ready, wait_task_change
from tests.kube import KubeApi, condition
from tests.largest import largest_channels, largest_emails, largest_slack_reconcile
from tests.valkey_server import ValkeyProcess, free_port

pytestmark = pytest.mark.e2e

NS = "team-outcomes"
TOKEN = "xoxb-outcomes-token-7777777777"


@dataclass
class World:
    kube: KubeApi
    slack: SlackTestServer
    valkey: ValkeyProcess
    store: TaskStore
    operator: Process
    metrics_url: str

    def record(self, task_id: str) -> TaskRecord | None:
        return self.store.get(task_id)

    def writes_to(self, handle: str) -> list[str]:
        group_id = self.slack.usergroup(handle)["id"]
        return [
            c.method
            for c in self.slack.write_calls()
            if c.params.get("handle") == handle or c.params.get("usergroup") == group_id
        ]


@pytest.fixture(scope="module")
def world(kube: KubeApi, base_env: dict[str, str], e2e_dir: Path) -> Iterator[World]:
    kube.add_namespace(NS)
    valkey_server = ValkeyProcess(e2e_dir / "valkey-outcomes").start()
    metrics_port = free_port()
    env = {
        **base_env,
        "RECONCILER_VALKEY_URL": valkey_server.url,
        "RECONCILER_CACHE_TIMEOUT_SECONDS": "0.5",
        "RECONCILER_OPERATOR_METRICS_PORT": str(metrics_port),
        # Every run reads Slack itself: a run that shares a fresh read makes no slow call, and the
        # queued-run test needs one that is still running when the spec changes.
        "RECONCILER_SHARED_CACHE": "false",
    }
    with SlackTestServer() as slack:
        slack.add_token(TOKEN)
        for user in ("ann", "ben", "cat"):
            slack.add_user(f"{user}@example.com")
        kube.create_secret(NS, "slack-bot", {"token": TOKEN})
        operator = start_operator("operator-outcomes", env, e2e_dir, NS)
        store = TaskStore(ValkeyCache.from_url(valkey_server.url), ttl_seconds=3600, history_size=20)
        try:
            yield World(
                kube, slack, valkey_server, store, operator, f"http://127.0.0.1:{metrics_port}/metrics"
            )
        finally:
            operator.stop()
            valkey_server.stop()


def wait_running(world: World, name: str, trigger: str, timeout: float = 20) -> dict[str, Any]:
    return world.kube.wait_for(
        NS,
        name,
        lambda o: (
            condition(o, "Reconciling").get("reason") == "Running"
            and f"trigger {trigger}" in condition(o, "Reconciling").get("message", "")
        ),
        timeout,
        f"a running task (trigger {trigger})",
    )


def test_the_running_task_is_in_status_while_it_runs(world: World) -> None:
    world.slack.latency = 0.4
    try:
        name, _ = apply_group(world.kube, world.slack.api_url, NS, "running", ["ann@example.com"])
        running = wait_running(world, name, "create")
        task_id = running["status"]["taskId"]
        assert f"task {task_id} running" in condition(running, "Reconciling")["message"]
        assert condition(running, "Reconciling")["status"] == "True"
        # A new Reconcile: the running patch also observes its generation (no handler did before).
        assert (
            condition(running, "Ready")["status"] == "Unknown"
            and running["status"]["observedGeneration"] == 1
        )
        record = world.record(task_id)
        assert record is not None and record.status.value == "running"  # still in progress
    finally:
        world.slack.latency = 0.0
    done = wait_ready(world.kube, NS, name)
    assert done["status"]["taskId"] == task_id
    time.sleep(0.5)  # the running patch, sent beside the run, landed before the final status
    after = world.kube.get_reconcile(NS, name)
    assert (
        condition(after, "Reconciling")["status"] == "False" and condition(after, "Ready")["status"] == "True"
    )
    finished = world.record(task_id)
    assert finished is not None and finished.status.value == "success"


def test_a_reconcile_created_while_every_worker_is_busy_is_not_ready_before_its_run(world: World) -> None:
    """kstatus (Flux, Argo CD) reads a Reconcile without conditions as current: one whose run waits
    for a worker says Ready=Unknown for its generation before the run starts, not when it does, and
    names its task (pending) at once."""
    world.slack.latency = 1.5
    try:
        busy = [
            apply_group(world.kube, world.slack.api_url, NS, "busy", ["ann@example.com"])[0] for _ in range(4)
        ]
        for name in busy:  # the base env's 4 workers
            wait_running(world, name, "create")
        name, _ = apply_group(world.kube, world.slack.api_url, NS, "waits", ["ben@example.com"])
        seen = world.kube.wait_for(
            NS,
            name,
            lambda o: condition(o, "Ready").get("status") == "Unknown",
            5,
            "Ready=Unknown while the run waits for a worker",
        )
        assert seen["status"]["observedGeneration"] == 1
        # The same write names its task, recorded as pending: a pipeline can follow it already.
        task_id = seen["status"]["taskId"]
        pending = world.record(task_id)
        assert pending is not None and pending.status.value in ("pending", "running")
        assert "queued" in condition(seen, "Reconciling")["message"]
    finally:
        world.slack.latency = 0.0
    for reconcile in [*busy, name]:
        wait_ready(world.kube, NS, reconcile)
    done = world.kube.get_reconcile(NS, name)
    assert done["status"]["taskId"] == task_id  # the queued task is the one that ran
    finished = world.record(task_id)
    assert finished is not None and finished.status.value == "success" and finished.started_at is not None


def wait_event(world: World, reason: str, text: str, timeout: float = 10) -> None:
    """Kopf posts events from a queue, a moment after the status patch."""
    deadline = time.monotonic() + timeout
    while not any(e["reason"] == reason and text in e["message"] for e in world.kube.events(NS)):
        assert time.monotonic() < deadline, f"no {reason} event about {text}"
        time.sleep(0.1)


def fill(client: valkey.Valkey) -> int:
    """`maxmemory 1mb noeviction`, then fill it: every write that needs memory is refused (OOM)."""
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1mb")
    count = 0
    while True:
        try:
            client.set(f"filler:{count}", "x" * 20_000)
        except valkey.exceptions.OutOfMemoryError:
            return count
        count += 1


def give_back(client: valkey.Valkey, count: int) -> None:
    client.config_set("maxmemory", "0")
    if count:
        client.delete(*(f"filler:{i}" for i in range(count)))


def test_a_full_valkey_during_a_run_loses_no_outcome_and_applies_nothing_twice(world: World) -> None:
    admin = world.valkey.client()
    world.slack.latency = 0.4
    filled = 0
    try:
        name, handle = apply_group(
            world.kube, world.slack.api_url, NS, "full", ["ann@example.com", "ben@example.com"]
        )
        task_id = wait_running(world, name, "create")["status"]["taskId"]
        filled = fill(admin)
        obj = wait_ready(world.kube, NS, name, timeout=30)  # status and Event do not depend on Valkey
        assert obj["status"]["taskId"] == task_id and obj["status"]["summary"]["applied"] == 2
        record = world.record(task_id)
        assert record is not None and record.status.value == "running"  # the finished record is deferred
        wait_event(world, "Succeeded", task_id)
    finally:
        world.slack.latency = 0.0
        give_back(admin, filled)
    deadline = time.monotonic() + 20
    while (record := world.record(task_id)) is None or not record.status.finished:
        assert time.monotonic() < deadline, "the deferred record never reached Valkey"
        time.sleep(0.2)
    assert record.status.value == "success" and record.applied == 2
    assert world.writes_to(handle) == ["usergroups.create", "usergroups.users.update"]
    # A later run finds nothing to do: nothing is applied twice.
    world.kube.patch_reconcile(
        NS, name, {"metadata": {"annotations": {"reconciler.dev/requested-at": "again"}}}
    )
    again = wait_task_change(world.kube, NS, name, task_id)
    assert condition(again, "Ready")["status"] == "True" and again["status"]["summary"]["planned"] == 0
    assert world.writes_to(handle) == ["usergroups.create", "usergroups.users.update"]


def test_a_run_queued_behind_a_slow_one_uses_the_newest_spec(world: World) -> None:
    kube, slack = world.kube, world.slack
    name, handle = apply_group(kube, slack.api_url, NS, "queued", ["ann@example.com"], interval="1s")
    wait_ready(kube, NS, name)
    slack.latency = 5.0  # one call outlasts the sleep below, however many reads the fleet shares
    try:
        kube.patch_reconcile(NS, name, {"metadata": {"annotations": {"reconciler.dev/requested-at": "slow"}}})
        slow = wait_running(world, name, "requested")["status"]["taskId"]
        time.sleep(1.2)  # the interval timer fires meanwhile and queues behind the slow run
        kube.patch_reconcile(
            NS,
            name,
            {
                "spec": {
                    "slackUsergroups": {
                        "usergroups": [
                            {
                                "handle": handle,
                                "name": f"Group {handle}",
                                "users": ["ann@example.com", "cat@example.com"],
                            }
                        ]
                    }
                }
            },
        )
        slow_record = world.record(slow)
        assert slow_record is not None and slow_record.status.value == "running"  # the timer still waits
    finally:
        slack.latency = 0.0
    obj = kube.wait_for(
        NS,
        name,
        lambda o: (
            condition(o, "Ready").get("observedGeneration") == 2 and condition(o, "Ready")["status"] == "True"
        ),
    )
    assert len(slack.usergroup(handle)["users"]) == 2
    history = world.store.history(NS, name)
    after = history[: history.index(slow)]
    queued = world.record(after[-1])  # the first run after the slow one
    assert queued is not None and queued.reconcile.generation == 2, (queued, obj["status"])


def test_an_interval_added_later_starts_interval_runs(world: World) -> None:
    """A Reconcile without an interval has no timer (Kopf's `when`); one added later gets one."""
    name, _ = apply_group(world.kube, world.slack.api_url, NS, "later", ["ann@example.com"])
    first = wait_ready(world.kube, NS, name)["status"]["taskId"]
    world.kube.patch_reconcile(NS, name, {"spec": {"interval": "1s"}})
    deadline = time.monotonic() + 30
    triggers: list[str] = []
    while "interval" not in triggers:
        assert time.monotonic() < deadline, f"no interval run after the interval was set: {triggers}"
        time.sleep(0.3)
        history = world.store.history(NS, name)
        triggers = [r.trigger for t in history[: history.index(first)] if (r := world.record(t)) is not None]


def test_an_overflowing_interval_is_invalid_spec(world: World) -> None:
    """The emulator has no CEL, so the value reaches the operator as it would from an old CRD."""
    name, handle = apply_group(
        world.kube, world.slack.api_url, NS, "overflow", ["ann@example.com"], interval="99999999999999h"
    )
    obj = world.kube.wait_for(NS, name, lambda o: condition(o, "Stalled").get("status") == "True")
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "InvalidSpec" and "spec.interval" in stalled["message"]
    assert condition(obj, "Ready")["status"] == "False"
    record = world.record(obj["status"]["taskId"])
    assert record is not None and record.status.value == "failed"  # closed, not left running
    world.kube.patch_reconcile(NS, name, {"spec": {"interval": "99999999h"}})
    obj = world.kube.wait_for(
        NS,
        name,
        lambda o: (
            condition(o, "Stalled").get("observedGeneration") == 2
            and condition(o, "Stalled").get("status") == "True"
        ),
        what="generation 2 handled",
    )
    assert condition(obj, "Stalled")["reason"] == "InvalidSpec"
    assert "8760h" in condition(obj, "Stalled")["message"]
    assert not any(c.params.get("handle") == handle for c in world.slack.write_calls())
    log = world.operator.log()
    assert "OverflowError" not in log and "InternalError" not in log


def test_the_operator_exports_the_caches_memory_and_key_count(world: World) -> None:
    deadline = time.monotonic() + 20
    values: dict[str, float] = {}
    while time.monotonic() < deadline:
        text = httpx.get(world.metrics_url, timeout=5).text
        values = {
            line.split()[0]: float(line.split()[1])
            for line in text.splitlines()
            if line.startswith(("reconciler_operator_cache_memory_bytes", "reconciler_operator_cache_keys"))
        }
        if values.get("reconciler_operator_cache_keys", 0) > 0:
            break
        time.sleep(0.5)
    assert values["reconciler_operator_cache_memory_bytes"] > 100_000
    assert values["reconciler_operator_cache_keys"] >= 1


def test_the_largest_accepted_spec_reaches_ready_with_status_under_budget(world: World) -> None:
    """8 user groups of 1,000 users: before, Kopf's copy of the spec in an annotation went over the
    API server's 256 KiB (the emulator answers 422 like it) and the Reconcile never reported."""
    for email in largest_emails():
        world.slack.add_user(email)
    for channel in largest_channels():
        world.slack.add_channel(channel.removeprefix("#"))
    name = unique("largest")
    world.kube.create_reconcile(largest_slack_reconcile(name, NS, world.slack.api_url))
    obj = wait_ready(world.kube, NS, name, timeout=90)
    status_bytes = len(json.dumps(obj["status"], separators=(",", ":")).encode())
    assert status_bytes < STATUS_BUDGET_BYTES
    assert obj["status"]["summary"]["applied"] == obj["status"]["summary"]["planned"] >= 16
    detail = next(a["detail"] for a in obj["status"]["actions"] if a["type"] == "add_users")
    assert detail.endswith(f"more in task {obj['status']['taskId']}")
    annotations = obj["metadata"].get("annotations") or {}
    assert sum(len(k) + len(v) for k, v in annotations.items()) < 4096
    groups = [g for g in world.slack.usergroups() if g["handle"].startswith("hxx")]
    assert len(groups) == 8 and all(len(g["users"]) == 1000 for g in groups)
