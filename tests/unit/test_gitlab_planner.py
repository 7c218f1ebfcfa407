"""The GitLab members planner, table-driven: desired direct members + observed state -> actions.

Pure: no server, no client. Observed states are built by hand the way the client reports them.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from reconciler.errors import ReconcileError
from reconciler.integrations.gitlab_members import planner
from reconciler.integrations.gitlab_members.models import (
    AddMember,
    GitlabMembersSpec,
    GitlabMemberState,
    GitlabSourceState,
    GitlabState,
    GitlabUser,
    RemoveMember,
    SourceKind,
    UpdateMember,
)

TODAY = date(2026, 6, 1)
LEVELS = {"guest": 10, "reporter": 20, "developer": 30, "maintainer": 40, "owner": 50}
IDS = {"bot": 1, "alice": 2, "bob": 3, "carol": 4, "dave": 5, "erin": 6, "frank": 7}
BOT = GitlabUser(id=1, username="bot")


def m(username: str, level: str, expires: str | None = None, *, state: str = "active") -> GitlabMemberState:
    """An observed direct member."""
    return GitlabMemberState(
        id=IDS[username],
        username=username,
        state=state,
        access_level=LEVELS[level],
        expires_at=date.fromisoformat(expires) if expires else None,
    )


OMITTED = object()


def d(username: str, level: str, expires: str | object | None = OMITTED) -> dict[str, Any]:
    """A desired member as written in the spec; `expires` omitted: no expiresAt key at all."""
    member: dict[str, Any] = {"username": username, "accessLevel": level}
    if expires is not OMITTED:
        member["expiresAt"] = expires
    return member


def make_spec(
    groups: dict[str, list[dict[str, Any]]] | None = None,
    projects: dict[str, list[dict[str, Any]]] | None = None,
) -> GitlabMembersSpec:
    return GitlabMembersSpec.model_validate(
        {
            "url": "https://gitlab.example.com",
            "groups": [{"path": p, "members": ms} for p, ms in (groups or {}).items()],
            "projects": [{"path": p, "members": ms} for p, ms in (projects or {}).items()],
        }
    )


def make_state(
    groups: dict[str, list[GitlabMemberState] | None] | None = None,
    projects: dict[str, list[GitlabMemberState] | None] | None = None,
    users: dict[str, GitlabUser | None] | None = None,
) -> GitlabState:
    """Observed state; by default every known user is resolvable by lookup (as the service would do)."""
    if users is None:
        users = {name: GitlabUser(id=uid, username=name) for name, uid in IDS.items()}

    def sources(kind: SourceKind, items: dict[str, list[GitlabMemberState] | None] | None) -> dict[str, Any]:
        return {
            path: None if ms is None else GitlabSourceState(kind=kind, path=path, members=tuple(ms))
            for path, ms in (items or {}).items()
        }

    return GitlabState(
        own_user=BOT, groups=sources("group", groups), projects=sources("project", projects), users=users
    )


def summary(actions: list[Any]) -> list[tuple[str, str, str]]:
    return [(a.type, a.target, a.detail) for a in actions]


G = "acme/platform"
P = "acme/platform/api"

Summary = list[tuple[str, str, str]]
Sources = dict[str, Any]

# (id, desired groups, desired projects, observed groups, observed projects, expected actions)
CASES: list[tuple[str, Sources, Sources, Sources, Sources, Summary]] = [
    (
        "no-op",
        {G: [d("alice", "owner"), d("bob", "developer", "2027-01-31")]},
        {P: [d("carol", "reporter")]},
        {G: [m("alice", "owner"), m("bob", "developer", "2027-01-31")]},
        {P: [m("carol", "reporter")]},
        [],
    ),
    (
        "usernames match case-insensitively",
        {G: [d("Alice", "owner")]},
        {},
        {G: [m("alice", "owner")]},
        {},
        [],
    ),
    (
        "add, with and without expiry",
        {G: [d("alice", "owner"), d("bob", "maintainer", "2027-01-31")]},
        {P: [d("carol", "reporter")]},
        {G: [m("alice", "owner")]},
        {P: []},
        [
            ("add_member", G, "bob as maintainer, expires 2027-01-31"),
            ("add_member", P, "carol as reporter"),
        ],
    ),
    (
        "change level and set expiry",
        {G: [d("alice", "owner"), d("bob", "maintainer", "2027-01-31")]},
        {},
        {G: [m("alice", "owner"), m("bob", "developer")]},
        {},
        [("update_member", G, "bob: developer -> maintainer, expires 2027-01-31")],
    ),
    (
        "an empty expiresAt clears the expiry",
        {G: [d("alice", "owner"), d("bob", "developer", "")]},
        {},
        {G: [m("alice", "owner"), m("bob", "developer", "2027-01-31")]},
        {},
        [("update_member", G, "bob: no expiry (was 2027-01-31)")],
    ),
    (
        "an omitted expiresAt leaves the expiry alone",
        {G: [d("alice", "owner"), d("bob", "developer")]},
        {},
        {G: [m("alice", "owner"), m("bob", "developer", "2027-01-31")]},
        {},
        [],
    ),
    (
        "a null expiresAt leaves the expiry alone",
        {G: [d("alice", "owner"), d("bob", "developer", None)]},
        {},
        {G: [m("alice", "owner"), m("bob", "developer", "2027-01-31")]},
        {},
        [],
    ),
    (
        "an omitted expiresAt keeps the expiry through a level change",
        {G: [d("alice", "owner"), d("bob", "maintainer")]},
        {},
        {G: [m("alice", "owner"), m("bob", "developer", "2027-01-31")]},
        {},
        [("update_member", G, "bob: developer -> maintainer")],
    ),
    (
        "an empty expiresAt on a member without one changes nothing",
        {G: [d("alice", "owner"), d("bob", "developer", "")]},
        {},
        {G: [m("alice", "owner"), m("bob", "developer")]},
        {},
        [],
    ),
    (
        "a new member with an empty expiresAt gets none",
        {G: [d("alice", "owner"), d("bob", "developer", "")]},
        {},
        {G: [m("alice", "owner")]},
        {},
        [("add_member", G, "bob as developer")],
    ),
    (
        "change expiry",
        {G: [d("alice", "owner"), d("bob", "developer", "2027-06-30")]},
        {},
        {G: [m("alice", "owner"), m("bob", "developer", "2027-01-31")]},
        {},
        [("update_member", G, "bob: expires 2027-01-31 -> 2027-06-30")],
    ),
    (
        "remove unlisted direct members",
        {G: [d("alice", "owner")]},
        {P: []},
        {G: [m("alice", "owner"), m("carol", "reporter")]},
        {P: [m("dave", "developer")]},
        [("remove_member", G, "carol (was reporter)"), ("remove_member", P, "dave (was developer)")],
    ),
    (
        "inherited members are not in the direct lists and are never touched",
        {G: [d("alice", "owner"), d("bob", "maintainer")]},
        {P: [d("carol", "developer")]},
        {G: [m("alice", "owner"), m("bob", "maintainer")]},
        {P: [m("carol", "developer")]},  # alice and bob reach the project through the group only
        [],
    ),
    (
        "own user absent from the spec is kept",
        {G: [d("alice", "owner")]},
        {P: [d("carol", "reporter")]},
        {G: [m("alice", "owner"), m("bot", "owner")]},
        {P: [m("bot", "maintainer"), m("carol", "reporter")]},
        [],
    ),
    (
        "own user may be promoted or given an expiry",
        {G: [d("alice", "owner"), d("bot", "owner")]},
        {"tools/cli": [d("bot", "maintainer", "2027-01-31")]},
        {G: [m("alice", "owner"), m("bot", "maintainer")]},
        {"tools/cli": [m("bot", "maintainer")]},
        [
            ("update_member", G, "bot: maintainer -> owner"),
            ("update_member", "tools/cli", "bot: expires 2027-01-31"),
        ],
    ),
    (
        "order: adds, updates (promotions first), removals; groups before projects",
        {G: [d("alice", "developer"), d("bob", "owner"), d("carol", "guest"), d("dave", "reporter")]},
        {P: [d("erin", "developer")]},
        {G: [m("frank", "owner"), m("alice", "owner"), m("bob", "maintainer"), m("carol", "reporter")]},
        {P: []},
        [
            ("add_member", G, "dave as reporter"),
            ("update_member", G, "bob: maintainer -> owner"),
            ("update_member", G, "alice: owner -> developer"),
            ("update_member", G, "carol: reporter -> guest"),
            ("remove_member", G, "frank (was owner)"),
            ("add_member", P, "erin as developer"),
        ],
    ),
    (
        "an owner replacement is added before the old owner leaves",
        {G: [d("bob", "owner")]},
        {},
        {G: [m("alice", "owner")]},
        {},
        [("add_member", G, "bob as owner"), ("remove_member", G, "alice (was owner)")],
    ),
    (
        "groups: a parent from the spec is planned before its subgroup, otherwise spec order",
        {"acme/platform/team": [d("alice", "developer")], "other": [d("bob", "developer")], "acme": []},
        {},
        {"acme/platform/team": [], "other": [], "acme": [m("alice", "maintainer")]},
        {},
        [
            ("remove_member", "acme", "alice (was maintainer)"),
            ("add_member", "acme/platform/team", "alice as developer"),
            ("add_member", "other", "bob as developer"),
        ],
    ),
    (
        "a subgroup may drop its owners when its parent in the spec keeps one",
        {"acme": [d("alice", "owner")], G: [d("bob", "developer")]},
        {},
        {"acme": [m("alice", "owner")], G: [m("carol", "owner")]},
        {},
        [("add_member", G, "bob as developer"), ("remove_member", G, "carol (was owner)")],
    ),
    (
        "projects need no direct owner (their group's owners own them)",
        {},
        {P: [d("bob", "maintainer")]},
        {},
        {P: [m("alice", "owner"), m("bob", "maintainer")]},
        [("remove_member", P, "alice (was owner)")],
    ),
    (
        "a level equal to the one inherited from a spec group is fine",
        {G: [d("alice", "owner"), d("bob", "developer")]},
        {P: [d("bob", "developer")]},
        {G: [m("alice", "owner"), m("bob", "developer")]},
        {P: []},
        [("add_member", P, "bob as developer")],
    ),
    (
        "a past expiry that stays as it is is not sent again",
        {G: [d("alice", "owner"), d("bob", "maintainer", "2026-01-01")]},
        {},
        {G: [m("alice", "owner"), m("bob", "developer", "2026-01-01")]},
        {},
        [("update_member", G, "bob: developer -> maintainer")],
    ),
]


@pytest.mark.parametrize(
    ("desired_groups", "desired_projects", "groups", "projects", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_plan(
    desired_groups: dict[str, Any],
    desired_projects: dict[str, Any],
    groups: dict[str, Any],
    projects: dict[str, Any],
    expected: list[tuple[str, str, str]],
) -> None:
    spec = make_spec(desired_groups, desired_projects)
    actions = planner.plan(spec, make_state(groups, projects), today=TODAY)
    assert summary(actions) == expected


# (id, desired groups, desired projects, observed groups, observed projects, users, reason, named)
ERRORS: list[tuple[str, Sources, Sources, Sources, Sources, Any, str, list[str]]] = [
    (
        "missing group and project",
        {G: [d("alice", "owner")], "acme/gone": []},
        {"acme/nope": [], P: []},
        {G: [], "acme/gone": None},
        {"acme/nope": None, P: []},
        None,
        "NotFound",
        ["group acme/gone", "project acme/nope"],
    ),
    (
        "unknown users",
        {G: [d("alice", "owner"), d("zed", "developer")]},
        {P: [d("yan", "reporter")]},
        {G: []},
        {P: []},
        {"alice": GitlabUser(id=2, username="alice"), "zed": None, "yan": None},
        "UnknownUsers",
        ["zed", "yan"],
    ),
    (
        "blocked user, looked up",
        {G: [d("alice", "owner"), d("erin", "developer")]},
        {},
        {G: []},
        {},
        {
            "alice": GitlabUser(id=2, username="alice"),
            "erin": GitlabUser(id=6, username="erin", state="blocked"),
        },
        "UnknownUsers",
        ["erin (blocked)"],
    ),
    (
        "blocked user, already a direct member",
        {G: [d("alice", "owner")]},
        {P: [d("erin", "developer")]},
        {G: [m("alice", "owner")]},
        {P: [m("erin", "developer", state="blocked")]},
        {},
        "UnknownUsers",
        ["erin (blocked)"],
    ),
    (
        "no owner listed for a group that has owners",
        {G: [d("alice", "maintainer"), d("bob", "developer")]},
        {},
        {G: [m("alice", "owner"), m("bob", "developer")]},
        {},
        None,
        "OwnerRequired",
        ["group acme/platform", "alice"],
    ),
    (
        "removing the last owner",
        {G: [d("bob", "developer")]},
        {},
        {G: [m("alice", "owner"), m("bob", "developer")]},
        {},
        None,
        "OwnerRequired",
        ["group acme/platform"],
    ),
    (
        "empty member list for a group with owners",
        {G: []},
        {},
        {G: [m("alice", "owner")]},
        {},
        None,
        "OwnerRequired",
        ["group acme/platform"],
    ),
    (
        "demoting the token's own user",
        {G: [d("alice", "owner"), d("bot", "developer")]},
        {},
        {G: [m("alice", "owner"), m("bot", "maintainer")]},
        {},
        None,
        "InvalidSpec",
        ["bot", "own user", "maintainer"],
    ),
    (
        "expiry in the past",
        {G: [d("alice", "owner"), d("bob", "developer", "2026-05-31")]},
        {},
        {G: [m("alice", "owner")]},
        {},
        None,
        "InvalidSpec",
        ["bob", "2026-05-31", "in the past"],
    ),
    (
        "level below one inherited from a group in the spec",
        {G: [d("alice", "owner"), d("bob", "maintainer")]},
        {P: [d("bob", "reporter")]},
        {G: [m("alice", "owner")]},
        {P: []},
        None,
        "InvalidSpec",
        ["project acme/platform/api", "bob as reporter", "maintainer", "group acme/platform"],
    ),
    (
        "level below the own user's kept level in a parent group",
        {G: [d("alice", "owner")]},
        {P: [d("bot", "developer")]},
        {G: [m("alice", "owner"), m("bot", "maintainer")]},
        {P: []},
        None,
        "InvalidSpec",
        ["bot as developer", "maintainer"],
    ),
]


@pytest.mark.parametrize(
    ("desired_groups", "desired_projects", "groups", "projects", "users", "reason", "named"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_plan_refuses(
    desired_groups: dict[str, Any],
    desired_projects: dict[str, Any],
    groups: dict[str, Any],
    projects: dict[str, Any],
    users: Any,
    reason: str,
    named: list[str],
) -> None:
    spec = make_spec(desired_groups, desired_projects)
    with pytest.raises(ReconcileError) as info:
        planner.plan(spec, make_state(groups, projects, users), today=TODAY)
    assert info.value.reason == reason
    assert info.value.permanent
    for name in named:
        assert name in info.value.message
    assert "othing was changed" in info.value.message


def test_not_found_is_reported_before_unknown_users() -> None:
    spec = make_spec({G: [d("zed", "owner")], "gone": []})
    with pytest.raises(ReconcileError) as info:
        planner.plan(spec, make_state({G: [], "gone": None}, users={"zed": None}), today=TODAY)
    assert info.value.reason == "NotFound"


def test_actions_are_typed_and_frozen() -> None:
    spec = make_spec({G: [d("alice", "owner"), d("bob", "maintainer", "2027-01-31")]})
    state = make_state({G: [m("alice", "owner"), m("bob", "developer"), m("carol", "reporter")]})
    actions = planner.plan(spec, state, today=TODAY)
    update, removal = actions
    assert update == UpdateMember(
        target=G, kind="group", username="bob", user_id=3, access_level=40, old_access_level=30,
        expires_at=date(2027, 1, 31), old_expires_at=None,
    )
    assert removal == RemoveMember(target=G, kind="group", username="carol", user_id=4, access_level=20)
    with pytest.raises(ValidationError):
        update.access_level = 50  # type: ignore[misc]
    record = removal.to_record()
    assert (record.type, record.target, record.detail) == ("remove_member", G, "carol (was reporter)")
    add = AddMember(target=P, kind="project", username="dave", user_id=5, access_level=20)
    assert add.detail == "dave as reporter"


@pytest.mark.parametrize("usernames", [["alice", "alice"], ["alice", "Alice"]])
def test_duplicate_usernames_are_rejected_by_the_model(usernames: list[str]) -> None:
    with pytest.raises(ValidationError, match="duplicate"):
        make_spec({G: [d(name, "developer") for name in usernames]})


def test_unknown_access_level_is_rejected_by_the_model() -> None:
    with pytest.raises(ValidationError):
        make_spec({G: [d("alice", "admin")]})


# --- deletionPolicy: Delete ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("observed_group", "observed_project", "expected"),
    [
        pytest.param(
            [m("bot", "owner"), m("alice", "owner"), m("bob", "developer"), m("dave", "reporter")],
            [m("carol", "reporter")],
            [
                ("remove_member", G, "alice (was owner)"),
                ("remove_member", G, "bob (was developer)"),
                ("remove_member", P, "carol (was reporter)"),
            ],
            id="listed members go; the token's user and unlisted members stay",
        ),
        pytest.param(
            [m("alice", "owner"), m("bob", "owner")],
            [m("carol", "owner")],
            [("remove_member", G, "alice (was owner)")],
            id="the last direct owner of a group or project stays",
        ),
        pytest.param(None, None, [], id="a group or project that is gone is skipped"),
    ],
)
def test_teardown_removes_listed_members_but_never_the_bot_or_the_last_owner(
    observed_group: list[GitlabMemberState] | None,
    observed_project: list[GitlabMemberState] | None,
    expected: Summary,
) -> None:
    spec = make_spec(
        {G: [d("bot", "owner"), d("alice", "owner"), d("bob", "developer")]}, {P: [d("carol", "owner")]}
    )
    state = make_state({G: observed_group}, {P: observed_project})
    assert summary(planner.plan_teardown(spec, state)) == expected
