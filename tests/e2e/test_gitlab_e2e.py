"""gitlab-members end to end through the same operator, cache and sidecar as Slack."""

from __future__ import annotations

import base64

import pytest

from reconciler_testing.gitlab import DEVELOPER, MAINTAINER, OWNER, REPORTER, GitLabTestServer
from tests.e2e.conftest import Process, Sidecar
from tests.e2e.helpers import gitlab_reconcile, is_stalled, unique, wait_ready, wait_task_change
from tests.kube import KubeApi, condition

pytestmark = pytest.mark.e2e

NS = "team-platform"
TOKEN = "glpat-e2e-bot-token-ABCDEFGH"
BAD_TOKEN = "glpat-e2e-wrong-token-ZYXWVU"


@pytest.fixture(scope="module", autouse=True)
def gitlab_world(kube: KubeApi, gitlab: GitLabTestServer) -> None:
    gitlab.add_user("reconciler-bot")
    for person in ("alice", "bob", "carol", "dave"):
        gitlab.add_user(person)
    gitlab.add_user("mallory", state="blocked")
    gitlab.add_token(TOKEN, username="reconciler-bot")
    kube.create_secret(NS, "gitlab-bot", {"token": TOKEN})
    kube.create_secret(NS, "gitlab-wrong", {"token": BAD_TOKEN})


def new_group(gitlab: GitLabTestServer) -> str:
    path = unique("acme/platform")
    gitlab.add_group(path)
    gitlab.add_member("group", path, "reconciler-bot", OWNER)
    return path


def levels(gitlab: GitLabTestServer, kind: str, path: str) -> dict[str, int]:
    return {user: member["access_level"] for user, member in gitlab.members(kind, path).items()}


def test_dry_run_then_apply_then_change(
    kube: KubeApi, gitlab: GitLabTestServer, operator: Process, sidecar: Sidecar
) -> None:
    group = new_group(gitlab)
    project = f"{group}/api"
    gitlab.add_project(project)
    gitlab.add_member("group", group, "dave", REPORTER)  # not in the spec: removed
    name = unique("members")
    groups = [
        {
            "path": group,
            "members": [
                {"username": "alice", "accessLevel": "maintainer"},
                {"username": "bob", "accessLevel": "developer", "expiresAt": "2099-01-31"},
                {"username": "reconciler-bot", "accessLevel": "owner"},
            ],
        }
    ]
    projects = [{"path": project, "members": [{"username": "carol", "accessLevel": "reporter"}]}]
    gitlab.reset_calls()
    kube.create_reconcile(gitlab_reconcile(name, NS, gitlab.url, groups, projects, dryRun=True))
    dry = wait_ready(kube, NS, name)
    assert condition(dry, "Ready")["reason"] == "DryRun"
    assert gitlab.write_calls() == []
    assert sorted(a["type"] for a in dry["status"]["actions"]) == [
        "add_member",
        "add_member",
        "add_member",
        "remove_member",
    ]

    kube.patch_reconcile(NS, name, {"spec": {"dryRun": False}})
    applied = kube.wait_for(
        NS,
        name,
        lambda o: (
            o["status"].get("observedGeneration") == 2 and condition(o, "Ready").get("reason") == "Succeeded"
        ),
        30,
        "applied",
    )
    assert applied["status"]["summary"] == {"planned": 4, "applied": 4, "failed": 0}
    assert levels(gitlab, "group", group) == {"reconciler-bot": OWNER, "alice": MAINTAINER, "bob": DEVELOPER}
    assert gitlab.members("group", group)["bob"]["expires_at"] == "2099-01-31"
    assert levels(gitlab, "project", project) == {"carol": REPORTER}
    removals = [c for c in gitlab.write_calls() if c.method == "DELETE"]
    assert removals and all(c.query.get("skip_subresources") == "true" for c in removals)

    with sidecar.client() as http:
        record = http.get(f"/reconcile/{applied['status']['taskId']}").json()
    assert record["integration"] == "gitlab-members" and record["status"] == "success"
    assert {(a["type"], a["target"]) for a in record["actions"]} >= {
        ("add_member", group),
        ("add_member", project),
    }

    groups[0]["members"][0]["accessLevel"] = "developer"
    kube.patch_reconcile(NS, name, {"spec": {"gitlabMembers": {"groups": groups}}})
    changed = kube.wait_for(
        NS,
        name,
        lambda o: (
            o["status"].get("observedGeneration") == 3 and condition(o, "Ready").get("status") == "True"
        ),
        30,
        "generation 3",
    )
    assert [a["type"] for a in changed["status"]["actions"]] == ["update_member"]
    assert levels(gitlab, "group", group)["alice"] == DEVELOPER


def test_drift_is_undone_on_request_and_second_run_writes_nothing(
    kube: KubeApi, gitlab: GitLabTestServer, operator: Process
) -> None:
    group = new_group(gitlab)
    name = unique("drift")
    kube.create_reconcile(
        gitlab_reconcile(
            name,
            NS,
            gitlab.url,
            [
                {
                    "path": group,
                    "members": [
                        {"username": "alice", "accessLevel": "developer"},
                        {"username": "reconciler-bot", "accessLevel": "owner"},
                    ],
                }
            ],
        )
    )
    first = wait_ready(kube, NS, name)
    gitlab.reset_calls()
    kube.patch_reconcile(NS, name, {"metadata": {"annotations": {"reconciler.dev/requested-at": "idle"}}})
    idle = wait_task_change(kube, NS, name, first["status"]["taskId"])
    assert idle["status"]["summary"]["planned"] == 0 and gitlab.write_calls() == []

    gitlab.remove_member("group", group, "alice")
    gitlab.add_member("group", group, "carol", MAINTAINER)
    kube.patch_reconcile(NS, name, {"metadata": {"annotations": {"reconciler.dev/requested-at": "drift"}}})
    fixed = wait_task_change(kube, NS, name, idle["status"]["taskId"])
    assert fixed["status"]["lastHandledRequestedAt"] == "drift"
    assert levels(gitlab, "group", group) == {"reconciler-bot": OWNER, "alice": DEVELOPER}


@pytest.mark.parametrize(
    ("members", "path_exists", "reason", "named"),
    [
        ([{"username": "nobody", "accessLevel": "guest"}], True, "UnknownUsers", "nobody"),
        ([{"username": "mallory", "accessLevel": "guest"}], True, "UnknownUsers", "mallory"),
        ([{"username": "alice", "accessLevel": "guest"}], False, "NotFound", "missing/group"),
    ],
)
def test_unknown_users_and_missing_groups_stall_without_writes(
    kube: KubeApi,
    gitlab: GitLabTestServer,
    operator: Process,
    members: list[dict[str, str]],
    path_exists: bool,
    reason: str,
    named: str,
) -> None:
    group = new_group(gitlab) if path_exists else "missing/group"
    members = [*members, {"username": "reconciler-bot", "accessLevel": "owner"}]
    name = unique("bad")
    gitlab.reset_calls()
    kube.create_reconcile(gitlab_reconcile(name, NS, gitlab.url, [{"path": group, "members": members}]))
    obj = kube.wait_for(NS, name, is_stalled, 30, "Stalled=True")
    assert condition(obj, "Ready")["reason"] == reason and named in condition(obj, "Ready")["message"]
    assert gitlab.write_calls() == []


def test_bad_token_is_unauthorized(kube: KubeApi, gitlab: GitLabTestServer, operator: Process) -> None:
    group = new_group(gitlab)
    name = unique("badtoken")
    kube.create_reconcile(
        gitlab_reconcile(
            name,
            NS,
            gitlab.url,
            [{"path": group, "members": [{"username": "reconciler-bot", "accessLevel": "owner"}]}],
            secret="gitlab-wrong",
        )
    )
    obj = kube.wait_for(NS, name, is_stalled, 30, "Stalled=True")
    assert condition(obj, "Ready")["reason"] == "Unauthorized"


def test_rate_limited_writes_converge_without_duplicates(
    kube: KubeApi, gitlab: GitLabTestServer, operator: Process
) -> None:
    group = new_group(gitlab)
    name = unique("ratelimit")
    gitlab.reset_calls()
    gitlab.rate_limit(3, retry_after=0, method="POST")
    kube.create_reconcile(
        gitlab_reconcile(
            name,
            NS,
            gitlab.url,
            [
                {
                    "path": group,
                    "members": [
                        {"username": "alice", "accessLevel": "developer"},
                        {"username": "bob", "accessLevel": "reporter"},
                        {"username": "reconciler-bot", "accessLevel": "owner"},
                    ],
                }
            ],
        )
    )
    wait_ready(kube, NS, name)
    ok_posts = [c for c in gitlab.write_calls() if c.method == "POST"]
    assert len(ok_posts) == 2
    assert sum(1 for c in gitlab.calls if c.status == 429) == 3
    assert levels(gitlab, "group", group) == {"reconciler-bot": OWNER, "alice": DEVELOPER, "bob": REPORTER}


def test_no_gitlab_token_anywhere(kube: KubeApi, operator: Process, sidecar: Sidecar) -> None:
    texts = [operator.log(), sidecar.process.log(), str(kube.events(NS))]
    items = kube._client().get(f"/apis/reconciler.dev/v1alpha1/namespaces/{NS}/reconciles").json()["items"]
    with sidecar.client() as http:
        for item in items:
            texts.append(str(item.get("status")))
            for task_id in http.get(f"/reconciles/{NS}/{item['metadata']['name']}").json()["recent"]:
                texts.append(http.get(f"/reconcile/{task_id}").text)
    assert len(items) >= 5
    for token in (TOKEN, BAD_TOKEN):
        for form in (token, base64.b64encode(token.encode()).decode().rstrip("=")):
            assert all(form not in text for text in texts)
