"""The GitLab members integration end to end: the real GitlabClient (python-gitlab) against GitLabTestServer.

Everything goes through `run_integration`, as the operator and the command line call it; nothing is
monkeypatched. The server's call log is the oracle for how many GitLab calls a run costs.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from reconciler.integrations.base import RunOutcome
from reconciler.models.base import Action
from reconciler.models.spec import ReconcileSpec
from reconciler.runner import run_integration
from reconciler.settings import Settings
from reconciler_testing.gitlab import DEVELOPER, MAINTAINER, OWNER, REPORTER, GitLabTestServer

TOKEN = "glpat-Very-Secret-Token-0123456789"
READ_ONLY_TOKEN = "glpat-Read-Only-Token-9876543210"
SETTINGS = Settings(http_timeout_seconds=5, rate_limit_retries=3, transient_retries=2)
EXPIRES = "2099-01-31"

G1, G2, P1 = "acme/platform", "acme/data", "acme/platform/api"

SPEC_GROUPS = [
    {
        "path": G1,
        "members": [
            {"username": "alice", "accessLevel": "owner"},
            {"username": "bob", "accessLevel": "developer", "expiresAt": EXPIRES},
        ],
    },
    {
        "path": G2,
        "members": [
            {"username": "carol", "accessLevel": "maintainer"},
            {"username": "alice", "accessLevel": "developer"},
        ],
    },
]
SPEC_PROJECTS = [{"path": P1, "members": [{"username": "dave", "accessLevel": "reporter"}]}]
DESIRED = {
    ("group", G1): {"alice": (OWNER, None), "bob": (DEVELOPER, EXPIRES)},
    ("group", G2): {"carol": (MAINTAINER, None), "alice": (DEVELOPER, None)},
    ("project", P1): {"dave": (REPORTER, None)},
}
TOKEN_SELF = ("GET", "/api/v4/personal_access_tokens/self")
"""Read once per run that writes: the token's scopes, checked before the first write."""
LISTINGS = [
    ("GET", "/api/v4/user"),
    ("GET", "/api/v4/groups/acme%2Fplatform/members"),
    ("GET", "/api/v4/groups/acme%2Fdata/members"),
    ("GET", "/api/v4/projects/acme%2Fplatform%2Fapi/members"),
]


@pytest.fixture
def gitlab() -> Iterator[GitLabTestServer]:
    """acme (owned by the token's user `bot`) with two subgroups, a sub-subgroup and a project."""
    with GitLabTestServer() as server:
        for name in ("bot", "alice", "bob", "carol", "dave", "erin"):
            server.add_user(name)
        server.add_user("mallory", state="blocked")
        server.add_token(TOKEN, username="bot")
        server.add_token(READ_ONLY_TOKEN, username="bot", scopes=["read_api"])
        for group in ("acme", G1, G2, "acme/platform/team"):
            server.add_group(group)
        server.add_project(P1)
        server.add_member("group", "acme", "bot", OWNER)
        yield server


def run(
    gitlab: GitLabTestServer | str,
    groups: list[dict[str, Any]] | None = None,
    projects: list[dict[str, Any]] | None = None,
    *,
    token: str = TOKEN,
    dry_run: bool = False,
    settings: Settings = SETTINGS,
    **kwargs: Any,
) -> RunOutcome:
    """One run as the operator does it; `gitlab` is the server or just a URL."""
    spec = ReconcileSpec.model_validate(
        {
            "integration": "gitlab-members",
            "credentials": {"secretRef": {"name": "gitlab-token"}},
            "gitlabMembers": {
                "url": gitlab if isinstance(gitlab, str) else gitlab.url,
                "groups": SPEC_GROUPS if groups is None else groups,
                "projects": SPEC_PROJECTS if projects is None else projects,
            },
        }
    )
    return run_integration(spec, SecretStr(token), settings, dry_run=dry_run, **kwargs)


def state(gitlab: GitLabTestServer, kind: str, path: str) -> dict[str, tuple[int, str | None]]:
    return {name: (m["access_level"], m["expires_at"]) for name, m in gitlab.members(kind, path).items()}


def calls(gitlab: GitLabTestServer) -> list[tuple[str, str]]:
    return [(c.method, c.path) for c in gitlab.calls]


def reads(gitlab: GitLabTestServer) -> list[tuple[str, str]]:
    return [(c.method, c.path) for c in gitlab.calls if c.method == "GET"]


def writes(gitlab: GitLabTestServer) -> list[tuple[str, str]]:
    return [(c.method, c.path) for c in gitlab.write_calls()]


def summary(actions: list[Action]) -> list[tuple[str, str, str]]:
    return [(a.type, a.target, a.detail) for a in actions]


FIRST_PLAN = [
    ("add_member", G1, "alice as owner"),
    ("add_member", G1, f"bob as developer, expires {EXPIRES}"),
    ("add_member", G2, "carol as maintainer"),
    ("add_member", G2, "alice as developer"),
    ("add_member", P1, "dave as reporter"),
]


# --- converging -----------------------------------------------------------------------------------


def test_dry_run_plans_but_writes_nothing(gitlab: GitLabTestServer) -> None:
    outcome = run(gitlab, dry_run=True)

    assert outcome.ok, outcome.error
    assert outcome.dry_run
    assert summary(outcome.actions) == FIRST_PLAN
    assert outcome.applied == []
    assert gitlab.write_calls() == []
    assert all(c.method == "GET" for c in gitlab.calls)
    assert state(gitlab, "group", G1) == {}


def test_first_run_converges_and_second_run_only_reads_one_listing_per_path(gitlab: GitLabTestServer) -> None:
    """2 groups + 1 project: first run 9 reads (the token's scopes before writing) + 5 writes, second
    run 4 reads + 0 writes."""
    outcome = run(gitlab)

    assert outcome.ok, outcome.error
    assert summary(outcome.actions) == FIRST_PLAN
    assert outcome.applied == outcome.actions
    for (kind, path), members in DESIRED.items():
        assert state(gitlab, kind, path) == members
    # GET /user, one listing per path, one lookup per distinct username not yet a direct member
    assert reads(gitlab) == [*LISTINGS, *(("GET", "/api/v4/users"),) * 4, TOKEN_SELF]
    assert sorted(c.query["username"] for c in gitlab.calls if c.path == "/api/v4/users") == [
        "alice", "bob", "carol", "dave"
    ]
    assert len(gitlab.write_calls()) == 5
    assert len(gitlab.calls) == 14

    gitlab.reset_calls()
    second = run(gitlab)

    assert second.ok, second.error
    assert second.actions == []
    assert gitlab.write_calls() == []
    assert calls(gitlab) == LISTINGS
    assert all(c.query.get("per_page") == "100" for c in gitlab.calls if c.path.endswith("/members"))
    assert gitlab.calls_matching("GET", "/groups/acme%2Fplatform/members/all") == 0


def test_spec_change_writes_only_the_differences(gitlab: GitLabTestServer) -> None:
    assert run(gitlab).ok
    gitlab.reset_calls()
    groups = [
        {
            "path": G1,
            "members": [
                {"username": "alice", "accessLevel": "owner"},
                {"username": "bob", "accessLevel": "maintainer", "expiresAt": ""},  # "": clear it
            ],
        },
        {"path": G2, "members": [{"username": "carol", "accessLevel": "maintainer"}]},
    ]
    projects = [
        {
            "path": P1,
            "members": [
                {"username": "dave", "accessLevel": "reporter"},
                {"username": "erin", "accessLevel": "developer", "expiresAt": EXPIRES},
            ],
        }
    ]

    outcome = run(gitlab, groups, projects)

    assert outcome.ok, outcome.error
    assert summary(outcome.actions) == [
        ("update_member", G1, f"bob: developer -> maintainer, no expiry (was {EXPIRES})"),
        ("remove_member", G2, "alice (was developer)"),
        ("add_member", P1, f"erin as developer, expires {EXPIRES}"),
    ]
    assert state(gitlab, "group", G1) == {"alice": (OWNER, None), "bob": (MAINTAINER, None)}
    assert state(gitlab, "group", G2) == {"carol": (MAINTAINER, None)}
    assert state(gitlab, "project", P1) == {"dave": (REPORTER, None), "erin": (DEVELOPER, EXPIRES)}
    assert reads(gitlab) == [*LISTINGS, ("GET", "/api/v4/users"), TOKEN_SELF]  # only erin is looked up
    assert len(gitlab.write_calls()) == 3
    put = next(c for c in gitlab.calls if c.method == "PUT")
    assert put.body == {"access_level": MAINTAINER, "expires_at": ""}


def test_drift_is_undone(gitlab: GitLabTestServer) -> None:
    assert run(gitlab).ok
    gitlab.remove_member("group", G1, "bob")
    gitlab.add_member("group", G2, "carol", REPORTER)
    gitlab.add_member("project", P1, "erin", DEVELOPER)
    gitlab.reset_calls()

    outcome = run(gitlab)

    assert outcome.ok, outcome.error
    assert summary(outcome.actions) == [
        ("add_member", G1, f"bob as developer, expires {EXPIRES}"),
        ("update_member", G2, "carol: reporter -> maintainer"),
        ("remove_member", P1, "erin (was developer)"),
    ]
    for (kind, path), members in DESIRED.items():
        assert state(gitlab, kind, path) == members
    gitlab.reset_calls()
    assert run(gitlab).actions == []
    assert gitlab.write_calls() == []


def test_expiry_set_and_changed(gitlab: GitLabTestServer) -> None:
    gitlab.add_member("group", G1, "alice", OWNER)
    gitlab.add_member("group", G1, "bob", DEVELOPER, "2098-01-01")
    gitlab.add_member("group", G1, "carol", REPORTER)
    members = [
        {"username": "alice", "accessLevel": "owner"},
        {"username": "bob", "accessLevel": "developer", "expiresAt": EXPIRES},
        {"username": "carol", "accessLevel": "reporter", "expiresAt": EXPIRES},
    ]

    outcome = run(gitlab, [{"path": G1, "members": members}], [])

    assert outcome.ok, outcome.error
    assert summary(outcome.actions) == [
        ("update_member", G1, f"bob: expires 2098-01-01 -> {EXPIRES}"),
        ("update_member", G1, f"carol: expires {EXPIRES}"),
    ]
    assert state(gitlab, "group", G1) == {
        "alice": (OWNER, None), "bob": (DEVELOPER, EXPIRES), "carol": (REPORTER, EXPIRES)
    }


# --- what is never touched ------------------------------------------------------------------------


def test_group_removal_keeps_subgroup_and_project_memberships(gitlab: GitLabTestServer) -> None:
    gitlab.add_member("group", G1, "alice", OWNER)
    gitlab.add_member("group", G1, "erin", DEVELOPER)
    gitlab.add_member("group", "acme/platform/team", "erin", DEVELOPER)
    gitlab.add_member("project", P1, "erin", DEVELOPER)

    outcome = run(gitlab, [{"path": G1, "members": [{"username": "alice", "accessLevel": "owner"}]}], [])

    assert outcome.ok, outcome.error
    assert summary(outcome.actions) == [("remove_member", G1, "erin (was developer)")]
    (delete,) = [c for c in gitlab.calls if c.method == "DELETE"]
    assert delete.path == f"/api/v4/groups/acme%2Fplatform/members/{gitlab.user_id('erin')}"
    assert delete.query == {"skip_subresources": "true"}
    assert "erin" not in state(gitlab, "group", G1)
    assert state(gitlab, "group", "acme/platform/team") == {"erin": (DEVELOPER, None)}
    assert state(gitlab, "project", P1) == {"erin": (DEVELOPER, None)}


def test_inherited_members_and_own_user_are_untouched(gitlab: GitLabTestServer) -> None:
    gitlab.add_member("group", "acme", "carol", MAINTAINER)  # inherited by acme/platform and its project
    gitlab.add_member("group", G1, "bot", MAINTAINER)  # the token's own user, not in the spec
    gitlab.add_member("project", P1, "bot", DEVELOPER)

    outcome = run(gitlab, SPEC_GROUPS[:1], SPEC_PROJECTS)

    assert outcome.ok, outcome.error
    assert summary(outcome.actions) == [
        ("add_member", G1, "alice as owner"),
        ("add_member", G1, f"bob as developer, expires {EXPIRES}"),
        ("add_member", P1, "dave as reporter"),
    ]
    assert state(gitlab, "group", "acme") == {"bot": (OWNER, None), "carol": (MAINTAINER, None)}
    assert state(gitlab, "group", G1)["bot"] == (MAINTAINER, None)
    assert state(gitlab, "project", P1)["bot"] == (DEVELOPER, None)
    assert gitlab.calls_matching("GET", "/groups/acme%2Fplatform/members/all") == 0
    assert gitlab.calls_matching("DELETE", "/") == 0


# --- refusing bad input before writing ------------------------------------------------------------


def test_unknown_and_blocked_users_are_reported_and_nothing_is_written(gitlab: GitLabTestServer) -> None:
    groups = [
        *SPEC_GROUPS,
        {"path": "acme", "members": [{"username": "nobody", "accessLevel": "guest"},
                                     {"username": "mallory", "accessLevel": "guest"}]},
    ]

    outcome = run(gitlab, groups)

    assert outcome.error is not None
    assert outcome.error.reason == "UnknownUsers"
    assert outcome.error.permanent
    assert "nobody" in outcome.error.message
    assert "mallory (blocked)" in outcome.error.message
    assert outcome.actions == []
    assert gitlab.write_calls() == []


def test_missing_group_and_project_are_reported_and_nothing_is_written(gitlab: GitLabTestServer) -> None:
    groups: list[dict[str, Any]] = [*SPEC_GROUPS, {"path": "acme/gone", "members": []}]
    projects: list[dict[str, Any]] = [*SPEC_PROJECTS, {"path": "acme/platform/nope", "members": []}]

    outcome = run(gitlab, groups, projects)

    assert outcome.error is not None
    assert outcome.error.reason == "NotFound"
    assert outcome.error.permanent
    assert "group acme/gone" in outcome.error.message
    assert "project acme/platform/nope" in outcome.error.message
    assert gitlab.write_calls() == []
    assert gitlab.calls_matching("GET", "/users") == 0  # no lookups once the plan cannot succeed


def test_leaving_a_group_without_owner_is_refused_at_planning(gitlab: GitLabTestServer) -> None:
    gitlab.add_member("group", "acme", "alice", OWNER)

    outcome = run(gitlab, [{"path": "acme", "members": [{"username": "carol", "accessLevel": "owner"}]}], [])
    assert outcome.ok, outcome.error  # bot stays (own user), alice leaves after carol came in

    outcome = run(gitlab, [{"path": G1, "members": [{"username": "alice", "accessLevel": "owner"}]}], [])
    assert outcome.ok, outcome.error
    gitlab.reset_calls()

    outcome = run(gitlab, [{"path": G1, "members": [{"username": "alice", "accessLevel": "maintainer"}]}], [])

    assert outcome.error is not None
    assert outcome.error.reason == "OwnerRequired"
    assert outcome.error.permanent
    assert "acme/platform" in outcome.error.message
    assert gitlab.write_calls() == []


def test_level_below_an_inherited_one_from_the_spec_is_refused_at_planning(gitlab: GitLabTestServer) -> None:
    projects = [{"path": P1, "members": [{"username": "bob", "accessLevel": "reporter"}]}]

    outcome = run(gitlab, SPEC_GROUPS, projects)

    assert outcome.error is not None
    assert outcome.error.reason == "InvalidSpec"
    assert "bob as reporter" in outcome.error.message
    assert "inherited from group acme/platform" in outcome.error.message
    assert gitlab.write_calls() == []


def test_level_below_an_inherited_one_from_outside_the_spec_is_a_clear_permanent_error(
    gitlab: GitLabTestServer,
) -> None:
    gitlab.add_member("group", "acme", "dave", MAINTAINER)  # acme is not in the spec

    outcome = run(gitlab, SPEC_GROUPS, SPEC_PROJECTS)

    assert outcome.error is not None
    assert outcome.error.reason == "InvalidSpec"
    assert outcome.error.permanent
    assert outcome.failed_action == outcome.actions[-1]
    assert "add dave to project acme/platform/api" in outcome.error.message
    assert "access_level should be greater than or equal to Maintainer inherited membership" in (
        outcome.error.message
    )
    assert len(outcome.applied) == 4


# --- credentials ----------------------------------------------------------------------------------


def test_bad_token_is_unauthorized_after_one_call(gitlab: GitLabTestServer) -> None:
    outcome = run(gitlab, token="glpat-wrong")

    assert outcome.error is not None
    assert outcome.error.reason == "Unauthorized"
    assert outcome.error.permanent
    assert calls(gitlab) == [("GET", "/api/v4/user")]


def test_read_api_token_is_missing_scope_before_any_write(gitlab: GitLabTestServer) -> None:
    outcome = run(gitlab, token=READ_ONLY_TOKEN)

    assert outcome.error is not None
    assert outcome.error.reason == "MissingScope"
    assert outcome.error.permanent
    assert "lacks the scope(s) api" in outcome.error.message
    assert "it has: read_api" in outcome.error.message
    assert outcome.actions and outcome.applied == []
    assert outcome.failed_action is None
    assert [c for c in gitlab.calls if c.method != "GET"] == []  # not even a refused write
    assert calls(gitlab)[-1] == TOKEN_SELF


def test_read_api_token_plans_a_dry_run(gitlab: GitLabTestServer) -> None:
    outcome = run(gitlab, token=READ_ONLY_TOKEN, dry_run=True)

    assert outcome.error is None
    assert outcome.actions
    assert TOKEN_SELF not in calls(gitlab)


def test_token_never_appears_in_errors_or_logs(
    gitlab: GitLabTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    outcomes = [run(gitlab, token=READ_ONLY_TOKEN), run(gitlab, token=TOKEN + "x")]
    gitlab.fail(10, 503)
    outcomes.append(run(gitlab))
    gitlab.clear_faults()
    gitlab.add_member("group", "acme", "dave", MAINTAINER)
    outcomes.append(run(gitlab))

    for outcome in outcomes:
        assert outcome.error is not None
        for text in (outcome.error.message, str(outcome.error), repr(outcome.error)):
            assert TOKEN not in text
            assert READ_ONLY_TOKEN not in text
    assert caplog.records
    assert TOKEN not in caplog.text
    assert READ_ONLY_TOKEN not in caplog.text


# --- rate limits and outages ----------------------------------------------------------------------


def test_rate_limited_writes_converge_without_duplicate_writes(gitlab: GitLabTestServer) -> None:
    gitlab.rate_limit(2, retry_after=0, method="POST")
    gitlab.rate_limit(1, retry_after=1, method="POST", path_prefix="/projects")

    outcome = run(gitlab)

    assert outcome.ok, outcome.error
    assert outcome.applied == outcome.actions
    posts = [c.status for c in gitlab.calls if c.method == "POST"]
    assert posts.count(429) == 3
    assert posts.count(201) == 5
    assert len(gitlab.write_calls()) == 5
    for (kind, path), members in DESIRED.items():
        assert state(gitlab, kind, path) == members


def test_persistent_429s_are_a_transient_rate_limited_error(gitlab: GitLabTestServer) -> None:
    gitlab.rate_limit(10, retry_after=0, method="GET", path_prefix="/groups")

    outcome = run(gitlab, settings=Settings(http_timeout_seconds=5, rate_limit_retries=2))

    assert outcome.error is not None
    assert outcome.error.reason == "RateLimited"
    assert not outcome.error.permanent
    assert outcome.error.retry_after == 1.0  # Retry-After: 0, floored so a reschedule is never a hot loop
    assert gitlab.calls_matching("GET", "/groups") == 3  # the call and two retries
    assert gitlab.write_calls() == []


def test_server_errors_are_retried_a_bounded_number_of_times(gitlab: GitLabTestServer) -> None:
    gitlab.fail(2, 502, method="POST")

    outcome = run(gitlab)

    assert outcome.ok, outcome.error
    assert len(gitlab.write_calls()) == 5

    gitlab.reset_calls()
    gitlab.fail(10, 503, method="GET")
    outcome = run(gitlab)

    assert outcome.error is not None
    assert outcome.error.reason == "GitLabUnavailable"
    assert not outcome.error.permanent
    assert len(gitlab.calls) == 1 + SETTINGS.transient_retries


def test_unreachable_gitlab_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    outcome = run(f"http://127.0.0.1:{port}", settings=Settings(http_timeout_seconds=2, transient_retries=1))

    assert outcome.error is not None
    assert outcome.error.reason == "GitLabUnavailable"
    assert not outcome.error.permanent
    assert TOKEN not in outcome.error.message


def test_unexpected_answer_shape_is_a_bad_response() -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"unexpected": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        outcome = run(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()

    assert outcome.error is not None
    assert outcome.error.reason == "BadResponse"
    assert not outcome.error.permanent


# --- state changing between plan and apply --------------------------------------------------------


def test_changes_between_plan_and_apply_are_absorbed(gitlab: GitLabTestServer) -> None:
    """A member that appeared (or left) after planning, e.g. an earlier attempt whose answer was lost."""
    gitlab.add_member("group", G1, "erin", DEVELOPER)

    def meanwhile(actions: list[Action]) -> None:
        gitlab.add_member("group", G1, "alice", REPORTER)
        gitlab.remove_member("group", G1, "erin")

    outcome = run(gitlab, SPEC_GROUPS[:1], [], on_planned=meanwhile)

    assert outcome.ok, outcome.error
    assert [a.type for a in outcome.applied] == ["add_member", "add_member", "remove_member"]
    assert state(gitlab, "group", G1) == {"alice": (OWNER, None), "bob": (DEVELOPER, EXPIRES)}
    assert [(c.method, c.status) for c in gitlab.calls if c.method != "GET"] == [
        ("POST", 409), ("PUT", 200), ("POST", 201), ("DELETE", 404)
    ]


# --- pagination -----------------------------------------------------------------------------------


def test_large_groups_are_listed_in_pages_of_100(gitlab: GitLabTestServer) -> None:
    names = [f"user{i:03}" for i in range(150)]
    for name in names:
        gitlab.add_user(name)
        gitlab.add_member("group", G2, name, DEVELOPER)
    members = [{"username": name, "accessLevel": "developer"} for name in names]

    outcome = run(gitlab, [{"path": G2, "members": members}], [])

    assert outcome.ok, outcome.error
    assert outcome.actions == []
    assert calls(gitlab) == [("GET", "/api/v4/user"), *(("GET", "/api/v4/groups/acme%2Fdata/members"),) * 2]
