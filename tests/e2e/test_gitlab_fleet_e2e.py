"""A fleet on one GitLab user: two operator processes, one shared budget and one set of shared
reads, against a GitLab test server that throttles the user as GitLab does (429 + Retry-After)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler_testing.gitlab import DEVELOPER, OWNER, REPORTER, GitLabTestServer
from tests.e2e.conftest import Process, start_operator
from tests.e2e.helpers import gitlab_reconcile, unique, wait_ready, wait_task_change
from tests.kube import KubeApi

pytestmark = pytest.mark.e2e

NS_A, NS_B = "team-gitlab-fleet-a", "team-gitlab-fleet-b"
TOKEN = "glpat-e2e-fleet-token-0123456789"
LIMIT, WINDOW = 30, 2.0
"""GitLab's per-user limit (2,000 a minute on GitLab.com), shortened: 30 requests per 2 s here."""
FLEET = 6
"""Reconciles of two groups each: about 80 requests, several windows' worth."""
USERS = [f"member{i}" for i in range(20)]
PER_GROUP = 5


@pytest.fixture(scope="module")
def instance() -> Iterator[GitLabTestServer]:
    with GitLabTestServer() as server:
        server.add_user("fleet-bot")
        for name in USERS:
            server.add_user(name)
        server.add_token(TOKEN, username="fleet-bot")
        server.add_group("fleet")
        server.add_member("group", "fleet", "fleet-bot", OWNER)
        server.user_rate_limit = (LIMIT, WINDOW)
        yield server


@pytest.fixture(scope="module")
def operators(
    kube: KubeApi, instance: GitLabTestServer, base_env: dict[str, str], e2e_dir: Path
) -> Iterator[list[Process]]:
    env = {
        **base_env,
        "RECONCILER_GITLAB_RATE_LIMIT": str(LIMIT),
        # 10% longer than the server's: on GitLab's real minute the budget's 2% margin is 1.2 s of
        # slack for a call's way from the budget to the server; on 2 s, a loaded machine needs more.
        "RECONCILER_GITLAB_RATE_WINDOW_SECONDS": str(WINDOW * 1.1),
        "RECONCILER_MAX_WORKERS": "4",
    }
    processes = []
    for namespace in (NS_A, NS_B):
        kube.create_secret(namespace, "gitlab-bot", {"token": TOKEN})
        processes.append(start_operator(f"operator-{namespace}", env, e2e_dir, namespace))
    yield processes
    for process in processes:
        process.stop()


def _members(first: int) -> list[str]:
    return [USERS[(first + j) % len(USERS)] for j in range(PER_GROUP)]


def _fleet(instance: GitLabTestServer) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """Each Reconcile: group `a` new (all to add), group `b` drifted (one missing, one at the wrong
    level, one member not listed)."""
    fleet = []
    for i in range(FLEET):
        name = unique("gl-fleet")
        new, drifted = f"fleet/{name}-a", f"fleet/{name}-b"
        a, b = _members(i * 3), _members(i * 3 + 10)
        instance.add_group(new)
        instance.add_group(drifted)
        instance.add_member("group", drifted, b[0], REPORTER)
        for username in b[1:-1]:
            instance.add_member("group", drifted, username, DEVELOPER)
        instance.add_member("group", drifted, USERS[(i * 3 + 15) % len(USERS)], DEVELOPER)
        groups = [
            {"path": path, "members": [{"username": u, "accessLevel": "developer"} for u in users]}
            for path, users in ((new, a), (drifted, b))
        ]
        fleet.append(((NS_A, NS_B)[i % 2], name, groups))
    return fleet


def _count(instance: GitLabTestServer) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for call in instance.calls:
        path = call.path.removeprefix("/api/v4")
        if call.status == 429:
            kinds["429"] += 1
        elif call.method == "GET" and path.endswith("/members"):
            kinds["listing"] += 1
        elif call.method == "GET" and path == "/users":
            kinds["lookup"] += 1
        elif call.method == "GET":
            kinds[path] += 1
        else:
            kinds["write"] += 1
    return kinds


def test_a_fleet_on_one_gitlab_user_shares_reads_and_budget_across_two_operators(
    kube: KubeApi, instance: GitLabTestServer, operators: list[Process]
) -> None:
    fleet = _fleet(instance)
    instance.reset_calls()
    for namespace, name, groups in fleet:
        kube.create_reconcile(gitlab_reconcile(name, namespace, instance.url, groups))
    tasks = {name: wait_ready(kube, ns, name, timeout=90)["status"]["taskId"] for ns, name, _ in fleet}

    # Converged (5 adds per new group; add, level change, removal per drifted one) without one
    # 429: both processes drew from the user's one budget. Usernames were looked up for the fleet,
    # not once per run; the token's user and scopes were read once or twice, not once per run.
    for _, _, groups in fleet:
        for group in groups:
            wanted = {m["username"]: DEVELOPER for m in group["members"]}
            found = {u: m["access_level"] for u, m in instance.members("group", group["path"]).items()}
            assert found == wanted
    calls = _count(instance)
    assert calls["429"] == 0, [(c.method, c.path) for c in instance.calls if c.status == 429]
    assert calls["write"] == FLEET * (PER_GROUP + 3)
    assert calls["listing"] == 2 * FLEET
    wanted_lookups = {m["username"] for _, _, groups in fleet for m in groups[0]["members"]}
    wanted_lookups |= {groups[1]["members"][-1]["username"] for _, _, groups in fleet}
    looked_up = Counter(c.query.get("username") for c in instance.calls if c.path == "/api/v4/users")
    # (A run asked for after a username's lookup started looks it up again: its own freshness.)
    assert set(looked_up) == wanted_lookups
    assert sum(looked_up.values()) < FLEET * (PER_GROUP + 1)  # what runs looking up alone would make
    assert calls["/user"] < FLEET
    assert calls["/personal_access_tokens/self"] == 1

    # Nothing changed, all asked for again at once: every run lists its own groups after its
    # request (one listing per group, the floor), shares the token's user, looks nobody up.
    instance.reset_calls()
    value = datetime.now(UTC).isoformat()
    for namespace, name, _ in fleet:
        kube.patch_reconcile(
            namespace, name, {"metadata": {"annotations": {"reconciler.dev/requested-at": value}}}
        )
    for namespace, name, _ in fleet:
        wait_task_change(kube, namespace, name, tasks[name], timeout=60)
    time.sleep(0.2)
    calls = _count(instance)
    assert calls["429"] == 0 and calls["write"] == 0 and calls["lookup"] == 0
    assert calls["listing"] == 2 * FLEET
    assert calls["/user"] < FLEET
    for namespace, name, _ in fleet:
        kube.delete_reconcile(namespace, name)
