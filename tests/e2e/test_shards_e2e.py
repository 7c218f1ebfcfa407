"""Sharding: two operator processes against one API server and one Valkey, each with a label selector
(one from RECONCILER_SHARD_SELECTOR, one from `reconciler run --selector`). Every Reconcile is run
by exactly one shard: counted in each shard's log and at the Slack server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler_testing.slack import SlackTestServer
from tests.e2e.conftest import Process, start_process, wait_http
from tests.e2e.helpers import slack_reconcile, unique, wait_ready
from tests.kube import KubeApi
from tests.valkey_server import free_port

pytestmark = pytest.mark.e2e

NS = "tenant-shards"
TOKEN = "xoxb-shards-token-8888888888"
SHARD = "reconciler.dev/shard"


def _start_shard(name: str, env: dict[str, str], log_dir: Path, *extra: str) -> Process:
    port = free_port()
    args = ["run", "-n", NS, "--standalone", "--liveness", f"http://127.0.0.1:{port}/healthz", *extra]
    process = start_process(name, args, env, log_dir)
    wait_http(f"http://127.0.0.1:{port}/healthz", process, timeout=60)
    return process


@pytest.fixture(scope="module")
def shards(
    kube: KubeApi, slack: SlackTestServer, base_env: dict[str, str], e2e_dir: Path
) -> Iterator[tuple[Process, Process]]:
    kube.add_namespace(NS)
    slack.add_token(TOKEN)
    slack.add_user("sam@example.com")
    kube.create_secret(NS, "slack-bot", {"token": TOKEN})
    shard_a = _start_shard(
        "operator-shard-a", {**base_env, "RECONCILER_SHARD_SELECTOR": f"{SHARD}=a"}, e2e_dir
    )
    # The catch-all shard, as Flux shards do: everything not labelled for shard a.
    shard_b = _start_shard("operator-shard-b", base_env, e2e_dir, "--selector", f"{SHARD}!=a")
    yield shard_a, shard_b
    shard_a.stop()
    shard_b.stop()


def _runs(process: Process, name: str) -> int:
    return len(re.findall(rf"task \w+ of {NS}/{re.escape(name)} \(", process.log()))


def test_each_reconcile_is_run_by_exactly_one_shard(
    kube: KubeApi, slack: SlackTestServer, shards: tuple[Process, Process]
) -> None:
    shard_a, shard_b = shards
    wanted = {"a": 3, "b": 2, None: 2}  # None: no shard label, so the catch-all shard's
    created: dict[str, tuple[str | None, str]] = {}
    for label, count in wanted.items():
        for _ in range(count):
            name, handle = unique("sharded"), unique("sharded")
            body = slack_reconcile(
                name,
                NS,
                slack.api_url,
                [{"handle": handle, "name": f"Sharded {handle}", "users": ["sam@example.com"]}],
            )
            if label is not None:
                body["metadata"]["labels"] = {SHARD: label}
            kube.create_reconcile(body)
            created[name] = (label, handle)

    for name in created:
        wait_ready(kube, NS, name, timeout=60)

    for name, (label, handle) in created.items():
        runs_a, runs_b = _runs(shard_a, name), _runs(shard_b, name)
        assert (runs_a, runs_b) == ((1, 0) if label == "a" else (0, 1)), (name, label, runs_a, runs_b)
        creates = [
            c
            for c in slack.write_calls()
            if c.method == "usergroups.create" and c.params.get("handle") == handle
        ]
        assert len(creates) == 1, (name, creates)
    assert "shard: Reconciles matching 'reconciler.dev/shard=a'" in shard_a.log()
    assert "shard: Reconciles matching 'reconciler.dev/shard!=a'" in shard_b.log()
