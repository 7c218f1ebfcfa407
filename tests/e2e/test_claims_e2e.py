"""Two Reconciles on one target, and deletionPolicy, with the real operator, valkey-server and the
Slack/GitLab test servers. The servers' call logs name the token's user of every call, so a write
from the Reconcile that does not own a target would show."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import valkey

from reconciler.claims import ClaimOwner, claim_key
from reconciler.integrations.slack_usergroups.models import slack_usergroup_target
from reconciler_testing.gitlab import DEVELOPER, OWNER, GitLabTestServer
from reconciler_testing.slack import TEAM_ID, WRITE_METHODS, SlackTestServer
from tests.e2e.conftest import Process, start_operator
from tests.e2e.helpers import gitlab_reconcile, is_ready, slack_reconcile, unique, wait_ready
from tests.kube import KubeApi, condition
from tests.valkey_server import ValkeyProcess

pytestmark = pytest.mark.e2e

NS_A, NS_B = "claims-a", "claims-b"
RUNS = 10
SLACK_TOKENS = {"first": "xoxb-claims-first-0123456789", "second": "xoxb-claims-second-0123456789"}
SLACK_USERS = {"first": "UCLAIMFIRST", "second": "UCLAIMSECOND"}
GITLAB_TOKENS = {"first": "glpat-claims-first-ABCDEFGH", "second": "glpat-claims-second-ABCDEFGH"}
PEOPLE = ("alice", "bob", "carol", "dave")
SLACK_IDS: dict[str, str] = {}


@pytest.fixture(scope="module")
def claims_operator(
    kube: KubeApi,
    slack: SlackTestServer,
    gitlab: GitLabTestServer,
    base_env: dict[str, str],
    e2e_dir: Path,
) -> Iterator[Process]:
    """An operator of its own, on two namespaces of its own, retrying Conflicts every second."""
    for namespace in (NS_A, NS_B):
        kube.add_namespace(namespace)
    for who in ("first", "second"):
        slack.add_token(SLACK_TOKENS[who], user_id=SLACK_USERS[who])
        gitlab.add_user(f"{who}-bot")
        gitlab.add_token(GITLAB_TOKENS[who], username=f"{who}-bot")
        for namespace in (NS_A, NS_B):
            kube.create_secret(namespace, f"slack-{who}", {"token": SLACK_TOKENS[who]})
            kube.create_secret(namespace, f"gitlab-{who}", {"token": GITLAB_TOKENS[who]})
    for person in PEOPLE:
        SLACK_IDS[person] = slack.add_user(f"{person}@claims.example.com")
        gitlab.add_user(f"claims-{person}")
    env = {
        **base_env,
        "RECONCILER_CONFLICT_RETRY_SECONDS": "1",
        "RECONCILER_INTERVAL_CHECK_SECONDS": "0.5",
        "RECONCILER_DELETE_RETRIES": "2",
        # The failing delete proves the delete handler's retries; the client's own retries of each
        # 503 (3 by default, with backoff) only made every attempt ~5 s longer.
        "RECONCILER_TRANSIENT_RETRIES": "0",
    }
    process = start_operator("operator-claims", env, e2e_dir, NS_A, NS_B)
    yield process
    process.stop()


def email(person: str) -> str:
    return f"{person}@claims.example.com"


def slack_ids(*people: str) -> frozenset[str]:
    return frozenset(SLACK_IDS[p] for p in people)


def group(handle: str, *people: str) -> dict[str, Any]:
    return {"handle": handle, "name": f"Claims {handle}", "users": [email(p) for p in people]}


def is_conflict(obj: dict[str, Any]) -> bool:
    stalled = condition(obj, "Stalled")
    return stalled.get("status") == "True" and stalled.get("reason") == "Conflict"


def wait_gone(kube: KubeApi, namespace: str, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not kube.reconcile_exists(namespace, name):
            return
        time.sleep(0.1)
    raise AssertionError(f"{namespace}/{name} was not deleted (finalizer still there?)")


def assert_conflict_names(obj: dict[str, Any], owner: str, target_key: str) -> None:
    assert is_conflict(obj)
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "Ready")["reason"] == "Conflict"
    assert f"Reconcile {owner}" in condition(obj, "Stalled")["message"]
    claims = {c["target"]: c for c in obj["status"]["claims"]}
    assert claims[target_key] == {"target": target_key, "owner": owner, "held": False}


def watch_runs(
    kube: KubeApi, reconciles: list[tuple[str, str]], sample: Any, runs: int = RUNS, timeout: float = 90
) -> list[Any]:
    """Poll until each Reconcile has finished `runs` more tasks; return `sample()` taken all along."""
    seen: dict[tuple[str, str], set[str]] = {ref: set() for ref in reconciles}
    start = {ref: (kube.get_reconcile(*ref).get("status") or {}).get("taskId") for ref in reconciles}
    samples = []
    deadline = time.monotonic() + timeout
    while min(len(ids) for ids in seen.values()) < runs:
        assert time.monotonic() < deadline, {f"{ns}/{n}": len(ids) for (ns, n), ids in seen.items()}
        for ref in reconciles:
            task = (kube.get_reconcile(*ref).get("status") or {}).get("taskId")
            if task and task != start[ref]:
                seen[ref].add(task)
        samples.append(sample())
        time.sleep(0.05)
    return samples


def test_two_reconciles_on_one_slack_handle(
    kube: KubeApi, slack: SlackTestServer, claims_operator: Process
) -> None:
    handle, spare = unique("claimed"), unique("spare")
    key = slack_usergroup_target(TEAM_ID, handle).key
    first, second, third = unique("first"), unique("second"), unique("third")
    kube.create_reconcile(
        slack_reconcile(
            first, NS_A, slack.api_url, [group(handle, "alice", "bob")], "slack-first", interval="1s"
        )
    )
    owned = wait_ready(kube, NS_A, first)
    assert owned["status"]["claims"] == [{"target": key, "owner": f"{NS_A}/{first}", "held": True}]
    first_members = slack_ids("alice", "bob")
    assert frozenset(slack.usergroup(handle)["users"]) == first_members

    # Another namespace, and the same namespace (with deletionPolicy Delete: it must not touch it).
    kube.create_reconcile(
        slack_reconcile(
            second,
            NS_B,
            slack.api_url,
            [group(handle, "carol"), group(spare, "carol")],
            "slack-second",
            interval="1s",
        )
    )
    kube.create_reconcile(
        slack_reconcile(
            third, NS_A, slack.api_url, [group(handle, "dave")], "slack-second", deletionPolicy="Delete"
        )
    )
    for namespace, name in ((NS_B, second), (NS_A, third)):
        obj = kube.wait_for(namespace, name, is_conflict, 30, "Stalled=Conflict")
        assert_conflict_names(obj, f"{NS_A}/{first}", key)
    assert frozenset(slack.usergroup(spare)["users"]) == slack_ids("carol"), "its other target converged"

    members = watch_runs(
        kube,
        [(NS_A, first), (NS_B, second), (NS_A, third)],
        lambda: frozenset(slack.usergroup(handle)["users"]),
    )
    assert set(members) == {first_members}, "the owner's members never flapped"
    spare_id = slack.usergroup(spare)["id"]
    intruding = [
        c
        for c in slack.calls
        if c.method in WRITE_METHODS
        and c.user == SLACK_USERS["second"]
        and spare not in (c.params.get("handle"), c.params.get("usergroup"))
        and spare_id != c.params.get("usergroup")
    ]
    assert intruding == [], "the Slack server recorded a write to the claimed group from a non-owner"
    assert is_conflict(kube.get_reconcile(NS_B, second)), "still Conflict after the runs"

    # A non-owner with deletionPolicy Delete leaves the owner's group alone.
    kube.delete_reconcile(NS_A, third)
    wait_gone(kube, NS_A, third)
    assert slack.usergroup(handle)["date_delete"] == 0
    assert frozenset(slack.usergroup(handle)["users"]) == first_members

    # The owner goes (Orphan: its group stays as it is); the waiting Reconcile takes over.
    kube.delete_reconcile(NS_A, first)
    wait_gone(kube, NS_A, first)
    assert slack.usergroup(handle)["date_delete"] == 0
    took_over = kube.wait_for(NS_B, second, is_ready, 30, "Ready after the owner was deleted")
    assert {c["target"]: c["held"] for c in took_over["status"]["claims"]}[key] is True
    assert frozenset(slack.usergroup(handle)["users"]) == slack_ids("carol")
    kube.delete_reconcile(NS_B, second)
    wait_gone(kube, NS_B, second)


def test_two_reconciles_on_one_gitlab_group(
    kube: KubeApi, gitlab: GitLabTestServer, claims_operator: Process
) -> None:
    path = unique("claims/platform")
    gitlab.add_group(path)
    for who in ("first", "second"):
        gitlab.add_member("group", path, f"{who}-bot", OWNER)
    first, second = unique("gl-first"), unique("gl-second")

    def spec(*people: str) -> list[dict[str, Any]]:
        bots = [{"username": f"{who}-bot", "accessLevel": "owner"} for who in ("first", "second")]
        listed = [{"username": f"claims-{p}", "accessLevel": "developer"} for p in people]
        return [{"path": path, "members": bots + listed}]

    kube.create_reconcile(
        gitlab_reconcile(first, NS_A, gitlab.url, spec("alice"), secret="gitlab-first", interval="1s")
    )
    wait_ready(kube, NS_A, first)
    # The same instance, spelled with a trailing slash: still the same target.
    kube.create_reconcile(
        gitlab_reconcile(second, NS_B, gitlab.url + "/", spec("bob"), secret="gitlab-second", interval="1s")
    )
    obj = kube.wait_for(NS_B, second, is_conflict, 30, "Stalled=Conflict")
    key = f"gitlab:{gitlab.url}:group:{path}"
    assert_conflict_names(obj, f"{NS_A}/{first}", key)

    members = watch_runs(
        kube, [(NS_A, first), (NS_B, second)], lambda: frozenset(gitlab.members("group", path))
    )
    assert set(members) == {frozenset({"first-bot", "second-bot", "claims-alice"})}
    assert [c for c in gitlab.write_calls() if c.user == "second-bot"] == []

    kube.delete_reconcile(NS_A, first)
    wait_gone(kube, NS_A, first)
    kube.wait_for(NS_B, second, is_ready, 30, "Ready after the owner was deleted")
    assert set(gitlab.members("group", path)) == {"first-bot", "second-bot", "claims-bob"}
    kube.delete_reconcile(NS_B, second)
    wait_gone(kube, NS_B, second)


def test_a_claim_whose_owner_is_gone_is_taken_over(
    kube: KubeApi, slack: SlackTestServer, valkey_server: ValkeyProcess, claims_operator: Process
) -> None:
    """A claim left behind (its owner's finalizer removed by hand, say): the next claimant asks the
    Kubernetes API, finds no such Reconcile, and takes the target over."""
    handle, name = unique("orphaned"), unique("heir")
    ghost = ClaimOwner(uid=str(uuid.uuid4()), namespace=NS_A, name="ghost")
    client = valkey.Valkey.from_url(valkey_server.url, decode_responses=True)
    client.set(claim_key(slack_usergroup_target(TEAM_ID, handle).key), ghost.to_json())
    kube.create_reconcile(slack_reconcile(name, NS_B, slack.api_url, [group(handle, "bob")], "slack-second"))
    obj = wait_ready(kube, NS_B, name)
    assert obj["status"]["claims"][0]["held"] is True
    assert (
        ClaimOwner.model_validate_json(client.get(claim_key(obj["status"]["claims"][0]["target"]))).name
        == name
    )
    kube.delete_reconcile(NS_B, name)
    wait_gone(kube, NS_B, name)


def test_deletion_policy_delete_disables_the_groups_and_orphan_leaves_them(
    kube: KubeApi, slack: SlackTestServer, valkey_server: ValkeyProcess, claims_operator: Process
) -> None:
    doomed, kept = unique("doomed"), unique("kept")
    handles = [unique("gone-a"), unique("gone-b")]
    orphan_handle = unique("stays")
    kube.create_reconcile(
        slack_reconcile(
            doomed,
            NS_A,
            slack.api_url,
            [group(h, "alice") for h in handles],
            "slack-first",
            deletionPolicy="Delete",
        )
    )
    kube.create_reconcile(
        slack_reconcile(kept, NS_A, slack.api_url, [group(orphan_handle, "bob")], "slack-first")
    )
    wait_ready(kube, NS_A, doomed)
    wait_ready(kube, NS_A, kept)

    kube.delete_reconcile(NS_A, doomed)
    kube.delete_reconcile(NS_A, kept)
    wait_gone(kube, NS_A, doomed)
    wait_gone(kube, NS_A, kept)
    assert all(slack.usergroup(h)["date_delete"] != 0 for h in handles), "Delete disables the groups"
    assert slack.usergroup(orphan_handle)["date_delete"] == 0, "Orphan leaves the group enabled"
    assert frozenset(slack.usergroup(orphan_handle)["users"]) == slack_ids("bob")
    client = valkey.Valkey.from_url(valkey_server.url, decode_responses=True)
    for handle in [*handles, orphan_handle]:
        assert client.get(claim_key(slack_usergroup_target(TEAM_ID, handle).key)) is None, "claims released"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # Kopf posts events in the background
        deleted = [
            e["message"]
            for e in kube.events(NS_A)
            if e["involvedObject"]["name"] in (doomed, kept) and e["reason"] == "Deleted"
        ]
        if len(deleted) == 2:
            break
        time.sleep(0.1)
    assert any("deletionPolicy Delete: 2 of 2 action(s) applied" in m for m in deleted), deleted
    assert any("deletionPolicy Orphan" in m for m in deleted), deleted


def test_deletion_policy_delete_removes_listed_gitlab_members_but_not_the_bot_or_last_owner(
    kube: KubeApi, gitlab: GitLabTestServer, claims_operator: Process
) -> None:
    path = unique("claims/doomed")
    project = f"{path}/api"
    gitlab.add_group(path)
    gitlab.add_project(project)
    gitlab.add_member("group", path, "first-bot", OWNER)
    name = unique("gl-doomed")
    groups = [
        {
            "path": path,
            "members": [
                {"username": "first-bot", "accessLevel": "owner"},
                {"username": "claims-alice", "accessLevel": "owner"},
                {"username": "claims-bob", "accessLevel": "developer"},
            ],
        }
    ]
    projects = [{"path": project, "members": [{"username": "claims-carol", "accessLevel": "owner"}]}]
    kube.create_reconcile(
        gitlab_reconcile(
            name, NS_A, gitlab.url, groups, projects, secret="gitlab-first", deletionPolicy="Delete"
        )
    )
    wait_ready(kube, NS_A, name)
    assert gitlab.members("group", path)["claims-bob"]["access_level"] == DEVELOPER

    kube.delete_reconcile(NS_A, name)
    wait_gone(kube, NS_A, name)
    assert set(gitlab.members("group", path)) == {"first-bot"}, "listed members removed, the bot stays"
    assert set(gitlab.members("project", project)) == {"claims-carol"}, "the last owner stays"


def test_a_failing_delete_is_retried_a_bounded_number_of_times_then_reported(
    kube: KubeApi, slack: SlackTestServer, valkey_server: ValkeyProcess, claims_operator: Process
) -> None:
    """Slack answers 503 to every disable: the delete handler retries (with backoff, in the worker
    pool) RECONCILER_DELETE_RETRIES times, then releases the finalizer and the claim anyway, leaves
    the group as it is, and says so in a DeletionFailed event."""
    name, handle = unique("undeletable"), unique("sticky")
    kube.create_reconcile(
        slack_reconcile(
            name, NS_A, slack.api_url, [group(handle, "carol")], "slack-first", deletionPolicy="Delete"
        )
    )
    wait_ready(kube, NS_A, name)
    slack.fail("usergroups.disable", 1000, status=503)
    try:
        started = time.monotonic()
        kube.delete_reconcile(NS_A, name)
        wait_gone(kube, NS_A, name, timeout=60)
        took = time.monotonic() - started
    finally:
        slack.clear_faults()
    attempts = [c for c in slack.calls if c.method == "usergroups.disable" and c.status == 503]
    assert attempts, "the deletion was tried"
    assert slack.usergroup(handle)["date_delete"] == 0, "given up: the group is left as it is"
    client = valkey.Valkey.from_url(valkey_server.url, decode_responses=True)
    assert client.get(claim_key(slack_usergroup_target(TEAM_ID, handle).key)) is None, "claim released"
    deadline = time.monotonic() + 10
    failed: list[str] = []
    while not failed and time.monotonic() < deadline:
        events = [e for e in kube.events(NS_A) if e["involvedObject"]["name"] == name]
        failed = [e["message"] for e in events if e["reason"] == "DeletionFailed"]
        time.sleep(0.1)
    assert any("retrying" in m for m in failed), failed
    assert any("giving up: the targets are left as they are" in m for m in failed), failed
    assert took >= 2, "retried with backoff (1 s, then 2 s), not in a hot loop"
