"""A fleet on one Slack workspace: two operator processes, one shared budget and cache, against a
Slack test server that enforces the tiers over a shortened window (429 + Retry-After)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler_testing.slack import SlackTestServer
from tests.e2e.conftest import Process, start_operator
from tests.e2e.helpers import is_ready, is_stalled, slack_reconcile, unique, wait_ready, wait_task_change
from tests.kube import KubeApi, condition

pytestmark = pytest.mark.e2e

NS_A, NS_B = "team-fleet-a", "team-fleet-b"
TOKEN = "xoxb-e2e-fleet-token-0123456789"
WINDOW = 2.0
"""Slack's minute, shortened: Tier 2 allows 20 calls per 2 s here."""
REFRESH = 5.0
"""Directory sweeps at most this often (an hour by default)."""
FLEET = 12
"""Reconciles of two user groups each: 24 creates, more than one window of Tier 2 allows."""
USERS = [f"user{i}@fleet.example.com" for i in range(300)]


@pytest.fixture(scope="module")
def workspace() -> Iterator[SlackTestServer]:
    with SlackTestServer(team_id="TFLEET01") as server:
        server.add_token(TOKEN)
        for email in USERS:
            server.add_user(email)
        for channel in ("fleet-general", "fleet-ops", "fleet-old"):
            server.add_channel(channel)
        server.enforce_tiers(WINDOW)
        yield server


@pytest.fixture(scope="module")
def operators(
    kube: KubeApi, workspace: SlackTestServer, base_env: dict[str, str], e2e_dir: Path
) -> Iterator[list[Process]]:
    env = {
        **base_env,
        "RECONCILER_SLACK_RATE_WINDOW_SECONDS": str(WINDOW),
        "RECONCILER_DIRECTORY_REFRESH_SECONDS": str(REFRESH),
        "RECONCILER_MAX_WORKERS": "4",
    }
    processes = []
    for namespace in (NS_A, NS_B):
        kube.create_secret(namespace, "slack-bot", {"token": TOKEN})
        processes.append(start_operator(f"operator-{namespace}", env, e2e_dir, namespace))
    yield processes
    for process in processes:
        process.stop()


def _group(handle: str, first: int, channels: list[str] | None = None) -> dict[str, Any]:
    return {
        "handle": handle,
        "name": f"Fleet {handle}",
        "users": USERS[first : first + 8],
        "channels": channels or [],
    }


def _request(kube: KubeApi, namespace: str, name: str) -> str:
    value = datetime.now(UTC).isoformat()
    kube.patch_reconcile(
        namespace, name, {"metadata": {"annotations": {"reconciler.dev/requested-at": value}}}
    )
    return value


def test_two_operators_share_one_budget_and_one_read_of_the_workspace(
    kube: KubeApi, workspace: SlackTestServer, operators: list[Process]
) -> None:
    workspace.reset_calls()
    started = time.monotonic()
    names: list[tuple[str, str]] = []
    for i in range(FLEET):
        namespace = (NS_A, NS_B)[i % 2]
        name = unique("fleet")
        groups = [_group(f"{name}-a", i * 10), _group(f"{name}-b", i * 10 + 5, ["fleet-general"])]
        kube.create_reconcile(slack_reconcile(name, namespace, workspace.api_url, groups))
        names.append((namespace, name))
    tasks = {name: wait_ready(kube, ns, name, timeout=90)["status"]["taskId"] for ns, name in names}
    took = time.monotonic() - started

    # 24 creates and 24 user updates at 20 per window each, and not one 429: both processes
    # drew from one budget. The directory was swept (300 users: 2 pages) once per refresh period
    # at most, not once per run; the user groups were read far fewer times than there were runs.
    assert workspace.rate_limited_calls() == 0
    assert workspace.calls_to("usergroups.create") == 2 * FLEET
    assert workspace.calls_to("usergroups.users.update") == 2 * FLEET
    assert 2 <= workspace.calls_to("users.list") <= 2 * (1 + int(took / REFRESH))
    assert workspace.calls_to("users.lookupByEmail") == 0
    assert workspace.calls_to("usergroups.list") < FLEET
    assert workspace.calls_to("auth.test") <= 2  # the first runs; then cached under the token hash

    # Nothing changed, all asked for again at once: each run reads the user groups after its own
    # request (and the channels too), yet they share reads; the directory comes from the cache.
    workspace.reset_calls()
    for namespace, name in names:
        _request(kube, namespace, name)
    for namespace, name in names:
        tasks[name] = wait_task_change(kube, namespace, name, tasks[name], timeout=30)["status"]["taskId"]
    assert workspace.write_calls() == []
    assert workspace.rate_limited_calls() == 0
    assert workspace.calls_to("usergroups.list") < FLEET
    for namespace, name in names:
        kube.delete_reconcile(namespace, name)


def test_a_deactivated_user_is_caught_through_the_cache(
    kube: KubeApi, workspace: SlackTestServer, operators: list[Process]
) -> None:
    name, handle = unique("deact"), unique("deact")
    users = USERS[200:203]
    kube.create_reconcile(slack_reconcile(name, NS_A, workspace.api_url, [_group(handle, 200)]))
    wait_ready(kube, NS_A, name, timeout=60)
    before = set(workspace.usergroup(handle)["users"])

    # Still "active" in the shared directory; Slack refuses the update; the run names the user.
    newcomer = USERS[250]
    workspace.deactivate_user(newcomer)
    kube.patch_reconcile(
        NS_A,
        name,
        {"spec": {"slackUsergroups": {"usergroups": [{**_group(handle, 200), "users": [*users, newcomer]}]}}},
    )
    obj = kube.wait_for(NS_A, name, is_stalled, 60, "Stalled")
    assert condition(obj, "Ready")["reason"] == "UnknownUsers"
    assert newcomer in condition(obj, "Ready")["message"]
    assert set(workspace.usergroup(handle)["users"]) == before

    # A member deactivated later: the next sweep (after the refresh period) reports it.
    kube.patch_reconcile(
        NS_A, name, {"spec": {"slackUsergroups": {"usergroups": [{**_group(handle, 200), "users": users}]}}}
    )
    wait_ready(kube, NS_A, name, timeout=60)
    workspace.deactivate_user(users[0])
    time.sleep(REFRESH + 0.5)
    _request(kube, NS_A, name)
    obj = kube.wait_for(NS_A, name, is_stalled, 60, "Stalled")
    assert condition(obj, "Ready")["reason"] == "UnknownUsers"
    assert users[0] in condition(obj, "Ready")["message"]


def test_a_renamed_channel_is_caught_through_the_cache(
    kube: KubeApi, workspace: SlackTestServer, operators: list[Process]
) -> None:
    name, handle = unique("chan"), unique("chan")
    group = _group(handle, 220, ["fleet-old"])
    kube.create_reconcile(slack_reconcile(name, NS_B, workspace.api_url, [group]))
    first = wait_ready(kube, NS_B, name, timeout=60)
    channel_id = workspace.usergroup(handle)["prefs"]["channels"]

    workspace.rename_channel("fleet-old", "fleet-renamed")
    _request(kube, NS_B, name)
    obj = wait_task_change(kube, NS_B, name, first["status"]["taskId"], timeout=60)
    assert is_stalled(obj)
    assert condition(obj, "Ready")["reason"] == "UnknownChannels"
    assert "#fleet-old" in condition(obj, "Ready")["message"]

    kube.patch_reconcile(
        NS_B, name, {"spec": {"slackUsergroups": {"usergroups": [{**group, "channels": ["fleet-renamed"]}]}}}
    )
    obj = kube.wait_for(NS_B, name, is_ready, 60, "Ready=True")
    assert workspace.usergroup(handle)["prefs"]["channels"] == channel_id
