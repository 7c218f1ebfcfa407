"""Drive the local GitLab server through the real python-gitlab client.

Why: the server is only useful if python-gitlab cannot tell it from GitLab for the calls the operator
makes, so every behaviour is checked through ``gitlab.Gitlab`` rather than raw HTTP where possible.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import gitlab
import gitlab.exceptions
import pytest
import requests

from reconciler_testing.gitlab import DEVELOPER, GUEST, MAINTAINER, OWNER, REPORTER, GitLabTestServer

TOKEN = "bot-token"
READ_TOKEN = "read-token"


@pytest.fixture
def server() -> Iterator[GitLabTestServer]:
    with GitLabTestServer() as srv:
        srv.add_user("bot", name="Reconciler Bot")
        srv.add_token(TOKEN, username="bot")
        srv.add_user("reader")
        srv.add_token(READ_TOKEN, username="reader", scopes=("read_api",))
        for username in ("alice", "bob", "carol"):
            srv.add_user(username)
        srv.add_user("mallory", state="blocked")
        srv.add_group("acme/platform/sre")  # creates acme and acme/platform too
        srv.add_project("acme/platform/api")
        srv.add_project("acme/platform/sre/runbooks")
        srv.add_member("group", "acme", "bot", OWNER)
        yield srv
        assert srv.errors == []


def make_client(server: GitLabTestServer, token: str = TOKEN) -> gitlab.Gitlab:
    # python-gitlab 8 has no obey_rate_limit constructor argument (it is a per-request argument that
    # defaults to True), so only retry_transient_errors is set here.
    return gitlab.Gitlab(server.url, private_token=token, retry_transient_errors=True, timeout=5)


@pytest.fixture
def gl(server: GitLabTestServer) -> gitlab.Gitlab:
    return make_client(server)


def error_body(err: gitlab.exceptions.GitlabError) -> Any:
    """The decoded ``message`` of an error; validation errors carry a dict, not a string."""
    assert err.response_body is not None
    return json.loads(err.response_body)["message"]


def test_lookup_by_path_and_id(server: GitLabTestServer, gl: gitlab.Gitlab) -> None:
    group = gl.groups.get("acme/platform")
    assert group.id == server.group_id("acme/platform")
    assert group.full_path == "acme/platform"
    assert group.parent_id == server.group_id("acme")
    assert gl.groups.get(group.id).full_path == "acme/platform"

    project = gl.projects.get("acme/platform/sre/runbooks")
    assert project.id == server.project_id("acme/platform/sre/runbooks")
    assert project.namespace["full_path"] == "acme/platform/sre"
    assert gl.projects.get(project.id).path_with_namespace == "acme/platform/sre/runbooks"
    assert server.calls_matching("GET", "/groups/acme%2Fplatform") == 1

    gl.auth()
    assert gl.user is not None and gl.user.username == "bot"
    [alice] = gl.users.list(username="ALICE")
    assert alice.username == "alice" and alice.state == "active"
    assert gl.users.get(alice.id).username == "alice"
    [mallory] = gl.users.list(username="mallory")
    assert mallory.state == "blocked"
    assert gl.users.list(username="nobody") == []


def test_not_found_bodies(server: GitLabTestServer, gl: gitlab.Gitlab) -> None:
    with pytest.raises(gitlab.exceptions.GitlabGetError) as group_err:
        gl.groups.get("acme/missing")
    assert group_err.value.response_code == 404
    assert group_err.value.error_message == "404 Group Not Found"

    with pytest.raises(gitlab.exceptions.GitlabGetError) as project_err:
        gl.projects.get(999999)
    assert project_err.value.response_code == 404
    assert project_err.value.error_message == "404 Project Not Found"

    group = gl.groups.get("acme", lazy=True)
    with pytest.raises(gitlab.exceptions.GitlabGetError) as member_err:
        group.members.get(server.user_id("alice"))
    assert member_err.value.response_code == 404

    raw = requests.get(f"{server.url}/api/v4/no/such/route", headers={"PRIVATE-TOKEN": TOKEN}, timeout=5)
    assert raw.status_code == 404
    assert raw.json() == {"error": "404 Not Found"}


def test_direct_and_inherited_members(server: GitLabTestServer, gl: gitlab.Gitlab) -> None:
    server.add_member("group", "acme", "alice", DEVELOPER)
    server.add_member("group", "acme/platform", "bob", REPORTER)
    server.add_member("group", "acme/platform/sre", "alice", MAINTAINER)
    server.add_member("project", "acme/platform/sre/runbooks", "carol", GUEST, "2999-01-31")

    sre = gl.groups.get("acme/platform/sre")
    assert {m.username: m.access_level for m in sre.members.list(get_all=True)} == {"alice": MAINTAINER}
    effective = {m.username: m.access_level for m in sre.members_all.list(get_all=True)}
    assert effective == {"bot": OWNER, "alice": MAINTAINER, "bob": REPORTER}

    project = gl.projects.get("acme/platform/sre/runbooks")
    [carol] = project.members.list(get_all=True)
    assert (carol.username, carol.access_level, carol.expires_at) == ("carol", GUEST, "2999-01-31")
    assert carol.membership_state == "active" and carol.web_url.endswith("/carol")
    project_all = {m.username: m.access_level for m in project.members_all.list(get_all=True)}
    assert project_all == {"bot": OWNER, "alice": MAINTAINER, "bob": REPORTER, "carol": GUEST}
    assert project.members_all.get(server.user_id("bob")).access_level == REPORTER

    # GitLab documents members/all as "highest access level wins", not "closest wins".
    server.add_member("group", "acme", "alice", OWNER)
    assert {m.username: m.access_level for m in sre.members_all.list(get_all=True)}["alice"] == OWNER

    filtered = sre.members_all.list(get_all=True, user_ids=[server.user_id("bob")])
    assert [m.username for m in filtered] == ["bob"]


def test_pagination_follows_link_headers(server: GitLabTestServer, gl: gitlab.Gitlab) -> None:
    for i in range(250):
        server.add_user(f"user{i:03d}")
        server.add_member("group", "acme/platform", f"user{i:03d}", DEVELOPER)
    group_id = server.group_id("acme/platform")
    group = gl.groups.get(group_id, lazy=True)
    path = f"/groups/{group_id}/members"

    server.reset_calls()
    members = group.members.list(get_all=True)
    assert len(members) == 250
    assert len({m.id for m in members}) == 250
    assert server.calls_matching("GET", path) == 13  # server default per_page is 20

    server.reset_calls()
    assert len(group.members.list(get_all=True, per_page=100)) == 250
    assert server.calls_matching("GET", path) == 3
    assert [c.query.get("page") for c in server.calls] == [None, "2", "3"]

    server.reset_calls()
    assert len(group.members.list(get_all=True, per_page=500)) == 250  # capped at 100
    assert server.calls_matching("GET", path) == 3

    pages = group.members.list(iterator=True, per_page=100)
    assert (pages.total, pages.total_pages, pages.per_page, pages.next_page) == (250, 3, 100, 2)

    raw = requests.get(
        f"{server.url}/api/v4{path}",
        params={"page": 2, "per_page": 100},
        headers={"PRIVATE-TOKEN": TOKEN},
        timeout=5,
    )
    assert raw.headers["X-Page"] == "2"
    assert raw.headers["X-Prev-Page"] == "1"
    assert raw.headers["X-Next-Page"] == "3"
    assert raw.headers["X-Total"] == "250"
    assert set(raw.links) == {"prev", "next", "first", "last"}
    assert raw.links["last"]["url"].endswith("page=3&per_page=100")
    last = requests.get(raw.links["last"]["url"], headers={"PRIVATE-TOKEN": TOKEN}, timeout=5)
    assert last.headers["X-Next-Page"] == "" and len(last.json()) == 50
    assert "next" not in last.links


def test_add_edit_delete_and_conflict(server: GitLabTestServer, gl: gitlab.Gitlab) -> None:
    project = gl.projects.get("acme/platform/api", lazy=True)
    alice_id = server.user_id("alice")
    server.reset_calls()

    created = project.members.create(
        {"user_id": alice_id, "access_level": DEVELOPER, "expires_at": "2999-12-31"}
    )
    assert (created.username, created.access_level, created.expires_at) == ("alice", DEVELOPER, "2999-12-31")
    assert server.members("project", "acme/platform/api") == {
        "alice": {"access_level": DEVELOPER, "expires_at": "2999-12-31"}
    }

    with pytest.raises(gitlab.exceptions.GitlabCreateError) as dup:
        project.members.create({"user_id": alice_id, "access_level": GUEST})
    assert dup.value.response_code == 409
    assert dup.value.error_message == "Member already exists"

    member = project.members.get(alice_id)
    member.access_level = MAINTAINER
    member.expires_at = ""  # empty clears the expiry
    member.save()
    assert server.members("project", "acme/platform/api")["alice"] == {
        "access_level": MAINTAINER,
        "expires_at": None,
    }

    project.members.delete(alice_id)
    assert server.members("project", "acme/platform/api") == {}
    writes = [(c.method, c.status) for c in server.write_calls()]
    assert writes == [("POST", 201), ("PUT", 200), ("DELETE", 204)]

    # Form-encoded bodies and query parameters are accepted as in GitLab (curl --data ...).
    url = f"{server.url}/api/v4/groups/acme%2Fplatform/members"
    form = requests.post(
        url,
        data={"user_id": str(alice_id), "access_level": "30"},
        headers={"PRIVATE-TOKEN": TOKEN},
        timeout=5,
    )
    assert form.status_code == 201 and form.json()["access_level"] == DEVELOPER
    query = requests.put(f"{url}/{alice_id}?access_level=40", headers={"PRIVATE-TOKEN": TOKEN}, timeout=5)
    assert query.status_code == 200 and query.json()["access_level"] == MAINTAINER

    with pytest.raises(gitlab.exceptions.GitlabCreateError) as unknown_user:
        project.members.create({"user_id": 424242, "access_level": DEVELOPER})
    assert (unknown_user.value.response_code, unknown_user.value.error_message) == (404, "404 User Not Found")


def test_member_validations(server: GitLabTestServer, gl: gitlab.Gitlab) -> None:
    server.add_member("group", "acme/platform", "bob", DEVELOPER)
    project = gl.projects.get("acme/platform/api", lazy=True)
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as lower:
        project.members.create({"user_id": server.user_id("bob"), "access_level": REPORTER})
    assert lower.value.response_code == 400
    assert error_body(lower.value) == {
        "access_level": [
            "should be greater than or equal to Developer inherited membership from group platform"
        ]
    }
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as past:
        project.members.create(
            {"user_id": server.user_id("carol"), "access_level": GUEST, "expires_at": "2001-01-01"}
        )
    assert error_body(past.value) == {"expires_at": ["cannot be a date in the past"]}
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as bad_level:
        project.members.create({"user_id": server.user_id("carol"), "access_level": 33})
    assert error_body(bad_level.value) == {"access_level": ["is not included in the list"]}


def test_auth_errors(server: GitLabTestServer) -> None:
    with pytest.raises(gitlab.exceptions.GitlabAuthenticationError) as bad:
        make_client(server, "wrong").groups.get("acme")
    assert bad.value.response_code == 401
    assert bad.value.error_message == "401 Unauthorized"
    missing = requests.get(f"{server.url}/api/v4/groups/acme", timeout=5)
    assert (missing.status_code, missing.json()) == (401, {"message": "401 Unauthorized"})
    bearer = requests.get(
        f"{server.url}/api/v4/user", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    assert bearer.json()["username"] == "bot"

    reader = make_client(server, READ_TOKEN)
    group = reader.groups.get("acme")  # reads are fine with read_api
    assert [m.username for m in group.members.list(get_all=True)] == ["bot"]
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as forbidden:
        group.members.create({"user_id": server.user_id("alice"), "access_level": DEVELOPER})
    assert forbidden.value.response_code == 403
    assert forbidden.value.error_message == "insufficient_scope"
    assert server.members("group", "acme") == {"bot": {"access_level": OWNER, "expires_at": None}}
    assert server.write_calls() == []


def test_skip_subresources(server: GitLabTestServer, gl: gitlab.Gitlab) -> None:
    def seed() -> None:
        server.add_member("group", "acme/platform", "alice", DEVELOPER)
        server.add_member("group", "acme/platform/sre", "alice", MAINTAINER)
        server.add_member("project", "acme/platform/api", "alice", MAINTAINER)
        server.add_member("project", "acme/platform/sre/runbooks", "alice", MAINTAINER)

    platform = gl.groups.get("acme/platform", lazy=True)
    alice_id = server.user_id("alice")

    seed()
    platform.members.delete(alice_id, skip_subresources=True)
    assert "alice" not in server.members("group", "acme/platform")
    assert "alice" in server.members("group", "acme/platform/sre")
    assert "alice" in server.members("project", "acme/platform/api")
    assert "alice" in server.members("project", "acme/platform/sre/runbooks")
    assert server.calls[-1].query == {"skip_subresources": "True"}

    server.remove_member("group", "acme/platform/sre", "alice")
    server.remove_member("project", "acme/platform/api", "alice")
    server.remove_member("project", "acme/platform/sre/runbooks", "alice")
    seed()
    platform.members.delete(alice_id)  # GitLab's default also removes descendant memberships
    assert "alice" not in server.members("group", "acme/platform")
    assert "alice" not in server.members("group", "acme/platform/sre")
    assert "alice" not in server.members("project", "acme/platform/api")
    assert "alice" not in server.members("project", "acme/platform/sre/runbooks")


def test_last_owner_protection(server: GitLabTestServer, gl: gitlab.Gitlab) -> None:
    acme = gl.groups.get("acme", lazy=True)
    bot_id = server.user_id("bot")
    with pytest.raises(gitlab.exceptions.GitlabDeleteError) as delete_err:
        acme.members.delete(bot_id)
    assert (delete_err.value.response_code, delete_err.value.error_message) == (403, "403 Forbidden")
    with pytest.raises(gitlab.exceptions.GitlabUpdateError) as demote_err:
        acme.members.update(bot_id, {"access_level": DEVELOPER})
    assert demote_err.value.response_code == 403
    assert server.members("group", "acme")["bot"]["access_level"] == OWNER

    # A second owner lifts the protection; an owner inherited from an ancestor counts too.
    acme.members.create({"user_id": server.user_id("alice"), "access_level": OWNER})
    acme.members.update(bot_id, {"access_level": MAINTAINER})
    server.add_member("group", "acme/platform", "bob", OWNER)
    gl.groups.get("acme/platform", lazy=True).members.delete(server.user_id("bob"))
    assert "bob" not in server.members("group", "acme/platform")


def test_rate_limit_obeyed(server: GitLabTestServer, gl: gitlab.Gitlab) -> None:
    server.rate_limit(2, retry_after=0)
    server.reset_calls()
    assert gl.groups.get("acme", obey_rate_limit=True).full_path == "acme"
    assert [c.status for c in server.calls] == [429, 429, 200]

    server.rate_limit(1, retry_after=7, method="POST")
    raw = requests.post(
        f"{server.url}/api/v4/groups/acme/members", headers={"PRIVATE-TOKEN": TOKEN}, timeout=5
    )
    assert raw.status_code == 429
    assert raw.text == "Retry later\n"
    assert raw.headers["Retry-After"] == "7"
    assert raw.headers["RateLimit-Remaining"] == "0"
    assert int(raw.headers["RateLimit-Reset"]) >= int(time.time())
    assert "RateLimit-ResetTime" in raw.headers

    server.rate_limit(1, retry_after=0)
    with pytest.raises(gitlab.exceptions.GitlabGetError) as not_obeyed:
        gl.groups.get("acme", obey_rate_limit=False)
    assert not_obeyed.value.response_code == 429


def test_server_errors_retried(server: GitLabTestServer, gl: gitlab.Gitlab) -> None:
    server.fail(2, status=500, method="GET")
    server.reset_calls()
    assert gl.groups.get("acme").id == server.group_id("acme")
    assert [c.status for c in server.calls] == [500, 500, 200]

    server.fail(1, status=502)
    no_retry = gitlab.Gitlab(server.url, private_token=TOKEN, retry_transient_errors=False)
    with pytest.raises(gitlab.exceptions.GitlabGetError) as err:
        no_retry.groups.get("acme")
    assert err.value.response_code == 502


def test_latency(server: GitLabTestServer, gl: gitlab.Gitlab) -> None:
    server.latency = 0.05
    started = time.monotonic()
    gl.groups.get("acme")
    assert time.monotonic() - started >= 0.05


def test_concurrent_writes_are_serialised(server: GitLabTestServer) -> None:
    alice_id = server.user_id("alice")

    def add(_: int) -> int:
        client = make_client(server)
        try:
            client.groups.get("acme", lazy=True).members.create({"user_id": alice_id, "access_level": GUEST})
        except gitlab.exceptions.GitlabCreateError as err:
            return err.response_code or 0
        return 201

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(add, range(8)))
    assert statuses == [201] + [409] * 7


def test_cli_with_seed_file(tmp_path: Path) -> None:
    seed = {
        "users": [{"username": "alice"}],
        "tokens": [{"token": "t", "username": "alice"}],
        "groups": ["acme"],
        "projects": ["acme/app"],
        "members": [{"kind": "project", "path": "acme/app", "username": "alice", "access_level": MAINTAINER}],
    }
    seed_file = tmp_path / "state.json"
    seed_file.write_text(json.dumps(seed))
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler_testing.gitlab", "--port", "0", "--seed-file", str(seed_file)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        client = gitlab.Gitlab(url, private_token="t")
        members = client.projects.get("acme/app").members.list(get_all=True)
        assert [(m.username, m.access_level) for m in members] == [("alice", MAINTAINER)]
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0


def test_a_token_describes_its_own_scopes_whatever_they_are(server: GitLabTestServer) -> None:
    server.add_token("user-only", username="reader", scopes=("read_user",))
    for token, scopes in ((TOKEN, ["api"]), (READ_TOKEN, ["read_api"]), ("user-only", ["read_user"])):
        info = make_client(server, token).personal_access_tokens.get("self")
        assert info.scopes == scopes
        assert info.active is True
    assert make_client(server, TOKEN).personal_access_tokens.get("self").user_id == server.user_id("bot")
    with pytest.raises(gitlab.exceptions.GitlabAuthenticationError):
        make_client(server, "wrong").personal_access_tokens.get("self")
