"""Table-driven tests of the pure Slack user-group planner and of the spec block it plans from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import ValidationError

from reconciler.errors import PermanentError
from reconciler.integrations.common import MAX_NAMES_IN_MESSAGE
from reconciler.integrations.slack_usergroups.models import (
    AddUsers,
    CreateUsergroup,
    DisableUsergroup,
    EnableUsergroup,
    RemoveUsers,
    SlackAction,
    SlackState,
    SlackUser,
    SlackUsergroup,
    SlackUsergroupsSpec,
    SlackUsergroupState,
    UpdateUsergroup,
)
from reconciler.integrations.slack_usergroups.planner import plan

ALICE, BOB, CAROL, DAVE = "alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"
USERS = (
    SlackUser(id="U1", email=ALICE),
    SlackUser(id="U2", email=BOB),
    SlackUser(id="U3", email=CAROL),
    SlackUser(id="U4", email=DAVE, deleted=True),
    SlackUser(id="UBOT", email=None),
)
CHANNELS = {"general": "C1", "eng": "C2", "ops": "C3"}


def want(
    handle: str,
    name: str | None = None,
    *,
    users: Sequence[str] = (),
    channels: Sequence[str] = (),
    description: str = "",
) -> SlackUsergroup:
    """A desired group, validated as the spec would be."""
    return SlackUsergroup.model_validate(
        {
            "handle": handle,
            "name": name or handle.title(),
            "description": description,
            "users": list(users),
            "channels": list(channels),
        }
    )


def have(
    handle: str,
    group_id: str,
    name: str | None = None,
    *,
    users: Sequence[str] = (),
    channels: Sequence[str] = (),
    description: str = "",
    enabled: bool = True,
) -> SlackUsergroupState:
    """A group as Slack has it now (ids, not e-mails)."""
    return SlackUsergroupState(
        id=group_id,
        handle=handle,
        name=name or handle.title(),
        description=description,
        enabled=enabled,
        users=frozenset(users),
        channels=frozenset(channels),
    )


def state(*groups: SlackUsergroupState, users: Sequence[SlackUser] = USERS) -> SlackState:
    return SlackState(usergroups=groups, users=tuple(users), channels=dict(CHANNELS))


# --- every action type, one group at a time -------------------------------------------------------

CASES: list[Any] = [
    pytest.param(
        [want("eng", "Engineering", users=[ALICE, BOB], channels=["eng"], description="builders")],
        state(),
        [
            CreateUsergroup(
                target="eng",
                name="Engineering",
                description="builders",
                channel_ids=("C2",),
                channel_names=("eng",),
            ),
            AddUsers(target="eng", usergroup_id=None, emails=(ALICE, BOB), user_ids=("U1", "U2")),
        ],
        id="create-then-add-users",
    ),
    pytest.param(
        [want("eng", "Engineering")],
        state(),
        [
            CreateUsergroup(target="eng", name="Engineering", description=""),
            DisableUsergroup(target="eng", usergroup_id=None),
        ],
        id="create-without-users-then-disable",
    ),
    pytest.param(
        [want("eng", users=[ALICE])],
        state(have("eng", "S1", users=["U1"], enabled=False)),
        [EnableUsergroup(target="eng", usergroup_id="S1")],
        id="enable-disabled-group-with-users",
    ),
    pytest.param(
        [want("eng", users=[ALICE, BOB])],
        state(have("eng", "S1", users=["U1"], enabled=False)),
        [
            EnableUsergroup(target="eng", usergroup_id="S1"),
            AddUsers(target="eng", usergroup_id="S1", emails=(BOB,), user_ids=("U1", "U2")),
        ],
        id="enable-then-add-users",
    ),
    pytest.param(
        [want("eng", "Engineering Team")],
        state(have("eng", "S1", "Engineering", enabled=False)),
        [
            UpdateUsergroup(
                target="eng",
                usergroup_id="S1",
                name="Engineering Team",
                changes=("name 'Engineering' -> 'Engineering Team'",),
            )
        ],
        id="disabled-and-empty-still-gets-metadata-updates",
    ),
    pytest.param(
        [want("eng", "Engineering Team", users=[ALICE])],
        state(have("eng", "S1", "Engineering", users=["U1"])),
        [
            UpdateUsergroup(
                target="eng",
                usergroup_id="S1",
                name="Engineering Team",
                changes=("name 'Engineering' -> 'Engineering Team'",),
            )
        ],
        id="update-name",
    ),
    pytest.param(
        [want("eng", users=[ALICE], description="new")],
        state(have("eng", "S1", users=["U1"], description="old")),
        [
            UpdateUsergroup(
                target="eng", usergroup_id="S1", description="new", changes=("description 'old' -> 'new'",)
            )
        ],
        id="update-description",
    ),
    pytest.param(
        [want("eng", users=[ALICE])],
        state(have("eng", "S1", users=["U1"], description="old")),
        [
            UpdateUsergroup(
                target="eng", usergroup_id="S1", description="", changes=("description 'old' -> ''",)
            )
        ],
        id="update-description-to-empty",
    ),
    pytest.param(
        [want("eng", users=[ALICE], channels=["general", "eng"])],
        state(have("eng", "S1", users=["U1"], channels=["C1"])),
        [
            UpdateUsergroup(
                target="eng", usergroup_id="S1", channel_ids=("C1", "C2"), changes=("channels +#eng",)
            )
        ],
        id="update-channels-add",
    ),
    pytest.param(
        [want("eng", users=[ALICE], channels=["general"])],
        state(have("eng", "S1", users=["U1"], channels=["C1", "C3"])),
        [UpdateUsergroup(target="eng", usergroup_id="S1", channel_ids=("C1",), changes=("channels -#ops",))],
        id="update-channels-remove",
    ),
    pytest.param(
        [want("eng", users=[ALICE])],
        state(have("eng", "S1", users=["U1"], channels=["C1", "C3"])),
        [
            UpdateUsergroup(
                target="eng", usergroup_id="S1", channel_ids=(), changes=("channels -#general -#ops",)
            )
        ],
        id="update-channels-remove-all",
    ),
    pytest.param(
        [want("eng", users=[ALICE], channels=["ops", "eng"])],
        state(have("eng", "S1", users=["U1"], channels=["C1", "C3"])),
        [
            UpdateUsergroup(
                target="eng",
                usergroup_id="S1",
                channel_ids=("C3", "C2"),
                changes=("channels +#eng -#general",),
            )
        ],
        id="update-channels-add-and-remove",
    ),
    pytest.param(
        [want("eng", "Eng", users=[ALICE], channels=["eng"], description="d2")],
        state(have("eng", "S1", "Engineering", users=["U1"], channels=["C1"], description="d1")),
        [
            UpdateUsergroup(
                target="eng",
                usergroup_id="S1",
                name="Eng",
                description="d2",
                channel_ids=("C2",),
                changes=(
                    "name 'Engineering' -> 'Eng'",
                    "description 'd1' -> 'd2'",
                    "channels +#eng -#general",
                ),
            )
        ],
        id="update-name-description-channels",
    ),
    pytest.param(
        [want("eng", users=[ALICE, BOB, CAROL])],
        state(have("eng", "S1", users=["U2"])),
        [AddUsers(target="eng", usergroup_id="S1", emails=(ALICE, CAROL), user_ids=("U1", "U2", "U3"))],
        id="add-users-only",
    ),
    pytest.param(
        [want("eng", users=[BOB])],
        state(have("eng", "S1", users=["U1", "U2", "U3"])),
        [RemoveUsers(target="eng", usergroup_id="S1", emails=(ALICE, CAROL), user_ids=("U2",))],
        id="remove-users-only",
    ),
    pytest.param(
        [want("eng", users=[BOB, CAROL])],
        state(have("eng", "S1", users=["U1", "U2"])),
        [
            AddUsers(target="eng", usergroup_id="S1", emails=(CAROL,), user_ids=("U2", "U3")),
            RemoveUsers(target="eng", usergroup_id="S1", emails=(ALICE,), user_ids=("U2", "U3")),
        ],
        id="add-and-remove-both-carry-full-list",
    ),
    pytest.param(
        [want("eng", users=[ALICE])],
        state(have("eng", "S1", users=["U1", "UGONE", "U4"])),
        [RemoveUsers(target="eng", usergroup_id="S1", emails=(DAVE, "UGONE"), user_ids=("U1",))],
        id="remove-labels-users-without-known-email-by-id",
    ),
    pytest.param(
        [want("eng")],
        state(have("eng", "S1", users=["U1", "U2"])),
        [DisableUsergroup(target="eng", usergroup_id="S1")],
        id="disable-when-no-users-listed",
    ),
    pytest.param(
        [want("eng")],
        state(have("eng", "S1", users=["U1"], enabled=False)),
        [],
        id="already-disabled-and-empty-is-a-no-op",
    ),
    pytest.param(
        [want("eng", "Engineering", users=[ALICE, BOB], channels=["eng", "general"], description="d")],
        state(have("eng", "S1", "Engineering", users=["U2", "U1"], channels=["C2", "C1"], description="d")),
        [],
        id="identical-is-a-no-op",
    ),
    pytest.param(
        [want("eng", users=[ALICE], channels=["ops", "general", "eng"])],
        state(have("eng", "S1", users=["U1"], channels=["C1", "C2", "C3"])),
        [],
        id="channel-order-is-irrelevant",
    ),
    pytest.param(
        [want("eng", users=[CAROL, BOB, ALICE])],
        state(have("eng", "S1", users=["U1", "U2", "U3"])),
        [],
        id="user-order-is-irrelevant",
    ),
    pytest.param(
        [want("eng", users=["Alice@Example.COM", "BOB@example.com"])],
        state(
            have("eng", "S1", users=["U1"]),
            users=[
                SlackUser(id="U1", email="ALICE@example.com"),
                SlackUser(id="U2", email="Bob@Example.com"),
            ],
        ),
        [AddUsers(target="eng", usergroup_id="S1", emails=(BOB,), user_ids=("U1", "U2"))],
        id="emails-match-case-insensitively",
    ),
]


@pytest.mark.parametrize(("desired", "current", "expected"), CASES)
def test_plan(desired: list[SlackUsergroup], current: SlackState, expected: list[SlackAction]) -> None:
    assert plan(desired, current) == expected


def test_plan_is_idempotent_once_applied() -> None:
    """Planning against the state the plan leads to gives nothing to do."""
    desired = [want("eng", "Engineering", users=[ALICE], channels=["eng"])]
    after = state(have("eng", "S9", "Engineering", users=["U1"], channels=["C2"]))
    assert plan(desired, after) == []


# --- ordering -------------------------------------------------------------------------------------


def test_groups_are_planned_in_spec_order_not_slack_order() -> None:
    desired = [want("zeta", users=[ALICE]), want("alpha", users=[BOB]), want("mid")]
    current = state(have("alpha", "S1", users=["U1"]), have("zeta", "S2", users=["U2"]))
    actions = plan(desired, current)
    assert [(a.target, a.type) for a in actions] == [
        ("zeta", "add_users"),
        ("zeta", "remove_users"),
        ("alpha", "add_users"),
        ("alpha", "remove_users"),
        ("mid", "create_usergroup"),
        ("mid", "disable_usergroup"),
    ]


def test_per_group_order_is_enable_update_add_remove() -> None:
    desired = [want("eng", "Eng", users=[BOB, CAROL], channels=["eng"])]
    current = state(have("eng", "S1", "Engineering", users=["U1", "U2"], enabled=False))
    assert [a.type for a in plan(desired, current)] == [
        "enable_usergroup",
        "update_usergroup",
        "add_users",
        "remove_users",
    ]


def test_update_comes_before_disable() -> None:
    desired = [want("eng", "Eng")]
    current = state(have("eng", "S1", "Engineering", users=["U1"]))
    assert [a.type for a in plan(desired, current)] == ["update_usergroup", "disable_usergroup"]


def test_create_comes_before_add_users() -> None:
    desired = [want("eng", users=[ALICE], channels=["eng"])]
    assert [a.type for a in plan(desired, state())] == ["create_usergroup", "add_users"]


# --- groups outside the spec ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "unmanaged",
    [
        pytest.param(have("other", "S9", users=["U1"]), id="enabled-with-users"),
        pytest.param(have("other", "S9"), id="enabled-empty"),
        pytest.param(have("other", "S9", users=["U1"], enabled=False), id="disabled"),
        pytest.param(have("other", "S9", users=["UGONE"], channels=["CGONE"]), id="unknown-ids"),
    ],
)
def test_handles_not_in_the_spec_are_never_touched(unmanaged: SlackUsergroupState) -> None:
    desired = [want("eng", users=[ALICE])]
    actions = plan(desired, state(unmanaged, have("eng", "S1", users=["U2"])))
    assert actions
    assert {a.target for a in actions} == {"eng"}
    assert all(getattr(a, "usergroup_id", None) != "S9" for a in actions)


def test_empty_spec_list_plans_nothing_even_with_groups_in_slack() -> None:
    assert plan([], state(have("other", "S9", users=["U1"]))) == []


# --- bad input ------------------------------------------------------------------------------------


def _plan_error(desired: list[SlackUsergroup], current: SlackState) -> PermanentError:
    with pytest.raises(PermanentError) as caught:
        plan(desired, current)
    return caught.value


@pytest.mark.parametrize(
    ("desired", "reason", "must_mention", "must_not_mention"),
    [
        pytest.param(
            [want("eng", users=[ALICE, "zed@example.com", "yan@example.com"])],
            "UnknownUsers",
            ["no Slack user has the e-mail yan@example.com, zed@example.com", "nothing was changed"],
            [ALICE, "deactivated"],
            id="unknown-emails",
        ),
        pytest.param(
            [want("eng", users=[ALICE, DAVE])],
            "UnknownUsers",
            [f"deactivated Slack users: {DAVE}"],
            ["no Slack user has"],
            id="deleted-users",
        ),
        pytest.param(
            [want("eng", users=["zed@example.com"]), want("ops", users=[DAVE])],
            "UnknownUsers",
            ["no Slack user has the e-mail zed@example.com;", f"deactivated Slack users: {DAVE}"],
            [],
            id="unknown-and-deleted-named-separately",
        ),
        pytest.param(
            [want("eng", users=[ALICE], channels=["eng", "#nope", "gone"])],
            "UnknownChannels",
            ["no Slack channel named #gone, #nope", "archived channels do not count", "nothing was changed"],
            ["#eng"],
            id="unknown-channels",
        ),
        pytest.param(
            [want("eng", "Platform", users=[ALICE])],
            "Conflict",
            ["usergroup eng", "'Platform'", "@platform"],
            [],
            id="name-held-by-unmanaged-group",
        ),
        pytest.param(
            [want("eng", "PLATFORM", users=[ALICE])],
            "Conflict",
            ["@platform"],
            [],
            id="name-conflict-is-case-insensitive",
        ),
        pytest.param(
            [want("eng", "Platform", users=[ALICE]), want("platform", "Platform Team", users=[BOB])],
            "Conflict",
            ["@platform"],
            [],
            id="name-held-by-another-managed-group",
        ),
    ],
)
def test_bad_input_raises_before_any_action(
    desired: list[SlackUsergroup], reason: str, must_mention: list[str], must_not_mention: list[str]
) -> None:
    current = state(have("platform", "S7", "Platform", users=["U3"]), have("eng", "S1", users=["U1"]))
    error = _plan_error(desired, current)
    assert error.reason == reason
    assert error.permanent
    for text in must_mention:
        assert text in error.message
    for text in must_not_mention:
        assert text not in error.message


def test_users_are_checked_before_channels() -> None:
    error = _plan_error([want("eng", users=["zed@example.com"], channels=["nope"])], state())
    assert error.reason == "UnknownUsers"


def test_renaming_a_group_to_its_own_name_in_another_case_is_no_conflict() -> None:
    actions = plan([want("eng", "ENG", users=[ALICE])], state(have("eng", "S1", "eng", users=["U1"])))
    assert [a.type for a in actions] == ["update_usergroup"]


def test_one_bad_group_fails_the_whole_plan() -> None:
    desired = [want("eng", users=[ALICE]), want("ops", users=["zed@example.com"])]
    assert _plan_error(desired, state()).reason == "UnknownUsers"


@pytest.mark.parametrize("extra", [1, 5, 30])
def test_long_lists_of_unknown_users_are_truncated(extra: int) -> None:
    emails = [f"user{n:03d}@example.com" for n in range(MAX_NAMES_IN_MESSAGE + extra)]
    error = _plan_error([want("eng", users=emails)], state())
    assert error.reason == "UnknownUsers"
    assert f"and {extra} more" in error.message
    assert emails[MAX_NAMES_IN_MESSAGE - 1] in error.message
    assert emails[MAX_NAMES_IN_MESSAGE] not in error.message


def test_exactly_max_names_are_not_truncated() -> None:
    emails = [f"user{n:03d}@example.com" for n in range(MAX_NAMES_IN_MESSAGE)]
    error = _plan_error([want("eng", users=emails)], state())
    assert "more" not in error.message
    assert all(email in error.message for email in emails)


def test_long_lists_of_unknown_channels_are_truncated() -> None:
    channels = [f"chan{n:03d}" for n in range(MAX_NAMES_IN_MESSAGE + 7)]
    error = _plan_error([want("eng", users=[ALICE], channels=channels)], state())
    assert error.reason == "UnknownChannels"
    assert "and 7 more" in error.message
    assert "#chan000" in error.message
    assert f"#chan{MAX_NAMES_IN_MESSAGE:03d}" not in error.message


def test_action_details_are_human_readable() -> None:
    actions = plan(
        [want("eng", "Engineering", users=[ALICE, BOB], channels=["eng", "general"]), want("ops")],
        state(),
    )
    assert [(a.type, a.detail) for a in actions] == [
        ("create_usergroup", "name 'Engineering', channels #eng, #general"),
        ("add_users", f"{ALICE}, {BOB}"),
        ("create_usergroup", "name 'Ops', channels none"),
        ("disable_usergroup", "no users listed; Slack refuses empty user groups, so it is disabled"),
    ]
    assert actions[0].to_record().model_dump() == {
        "type": "create_usergroup",
        "target": "eng",
        "detail": "name 'Engineering', channels #eng, #general",
    }


def test_actions_are_frozen() -> None:
    action = plan([want("eng")], state())[0]
    with pytest.raises(ValidationError):
        action.target = "ops"  # type: ignore[misc]


# --- the spec block -------------------------------------------------------------------------------


def _spec(usergroups: list[dict[str, Any]], **extra: Any) -> SlackUsergroupsSpec:
    return SlackUsergroupsSpec.model_validate({"usergroups": usergroups, **extra})


def test_spec_normalises_channels_and_emails() -> None:
    spec = _spec(
        [{"handle": "eng", "name": "Eng", "users": [" Alice@Example.COM "], "channels": ["#general", "eng"]}]
    )
    group = spec.usergroups[0]
    assert group.users == [ALICE]
    assert group.channels == ["general", "eng"]
    assert str(spec.api_url) == "https://slack.com/api/"


def test_spec_reads_camel_case_api_url() -> None:
    spec = _spec([{"handle": "eng", "name": "Eng"}], apiUrl="http://127.0.0.1:1234/api/")
    assert str(spec.api_url) == "http://127.0.0.1:1234/api/"


@pytest.mark.parametrize(
    ("usergroups", "message"),
    [
        pytest.param(
            [{"handle": "eng", "name": "A"}, {"handle": "eng", "name": "B"}],
            "duplicate usergroup handle: eng",
            id="duplicate-handles",
        ),
        pytest.param(
            [{"handle": "a", "name": "Same"}, {"handle": "b", "name": "SAME"}],
            "duplicate usergroup name: same",
            id="duplicate-names-case-insensitive",
        ),
        pytest.param(
            [{"handle": "eng", "name": "E", "users": [ALICE, "ALICE@example.com"]}],
            f"usergroup eng: user: {ALICE}",
            id="duplicate-users-after-lowercasing",
        ),
        pytest.param(
            [{"handle": "eng", "name": "E", "channels": ["#eng", "eng"]}],
            "usergroup eng: channel: eng",
            id="duplicate-channels-after-stripping-hash",
        ),
        pytest.param([{"handle": "eng", "name": "E", "users": ["not-an-email"]}], "pattern", id="bad-email"),
        pytest.param(
            [{"handle": "eng", "name": "E", "users": ["a b@example.com"]}], "pattern", id="email-space"
        ),
        pytest.param([{"handle": "Eng", "name": "E"}], "pattern", id="uppercase-handle"),
        pytest.param([{"handle": "-eng", "name": "E"}], "pattern", id="handle-leading-dash"),
        pytest.param([{"handle": "eng", "name": ""}], "at least 1", id="empty-name"),
        pytest.param([{"handle": "eng", "name": "E", "channels": ["##eng"]}], "pattern", id="double-hash"),
        pytest.param(
            [{"handle": "eng", "name": "E", "channels": ["Eng"]}], "pattern", id="uppercase-channel"
        ),
        pytest.param([{"handle": "eng", "name": "E", "extra": 1}], "Extra inputs", id="unknown-field"),
        pytest.param([], "at least 1", id="no-usergroups"),
    ],
)
def test_spec_rejects(usergroups: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _spec(usergroups)
    assert message in str(caught.value)


# --- omitted means unmanaged; an explicit empty value clears ----------------------------------------

EXISTING = have("eng", "S1", "Engineering", users=["U1"], channels=["C2"], description="builders")


def raw(**fields: Any) -> SlackUsergroup:
    """A desired group with only the given fields set (besides handle and users)."""
    return SlackUsergroup.model_validate({"handle": "eng", "users": [ALICE], **fields})


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="all omitted"),
        pytest.param({"name": None, "description": None, "channels": None}, id="all null"),
        pytest.param({"description": None}, id="description null"),
        pytest.param({"channels": None}, id="channels null"),
    ],
)
def test_omitted_or_null_fields_leave_slack_alone(fields: dict[str, Any]) -> None:
    assert plan([raw(**fields)], state(EXISTING)) == []


@pytest.mark.parametrize(
    ("fields", "update"),
    [
        pytest.param(
            {"description": ""},
            {"description": "", "changes": ("description 'builders' -> ''",)},
            id="empty description clears it",
        ),
        pytest.param(
            {"channels": []},
            {"channel_ids": (), "changes": ("channels -#eng",)},
            id="empty channels clear them",
        ),
        pytest.param(
            {"name": "Eng"},
            {"name": "Eng", "changes": ("name 'Engineering' -> 'Eng'",)},
            id="a given name is managed",
        ),
        pytest.param(
            {"description": "new", "channels": ["ops"]},
            {
                "description": "new",
                "channel_ids": ("C3",),
                "changes": ("description 'builders' -> 'new'", "channels +#ops -#eng"),
            },
            id="given fields are managed, the name is not",
        ),
    ],
)
def test_explicit_values_are_managed(fields: dict[str, Any], update: dict[str, Any]) -> None:
    assert plan([raw(**fields)], state(EXISTING)) == [
        UpdateUsergroup(target="eng", usergroup_id="S1", **update)
    ]


def test_a_new_group_without_name_description_or_channels_is_named_after_its_handle() -> None:
    assert plan([raw()], state()) == [
        CreateUsergroup(target="eng", name="eng", description="", channel_ids=(), channel_names=()),
        AddUsers(target="eng", usergroup_id=None, emails=(ALICE,), user_ids=("U1",)),
    ]


def test_a_new_group_named_after_its_handle_still_checks_name_conflicts() -> None:
    taken = have("other", "S9", "eng")
    with pytest.raises(PermanentError) as caught:
        plan([raw()], state(taken))
    assert caught.value.reason == "Conflict"


def test_an_omitted_name_of_an_existing_group_is_no_conflict() -> None:
    """The name is not managed, so whatever Slack has stays and cannot clash."""
    assert plan([raw()], state(EXISTING, have("other", "S9", "Engineering "))) == []


def test_users_stay_authoritative_when_other_fields_are_omitted() -> None:
    assert plan([SlackUsergroup.model_validate({"handle": "eng", "users": [BOB]})], state(EXISTING)) == [
        AddUsers(target="eng", usergroup_id="S1", emails=(BOB,), user_ids=("U2",)),
        RemoveUsers(target="eng", usergroup_id="S1", emails=(ALICE,), user_ids=("U2",)),
    ]


def test_an_empty_name_is_rejected_slack_needs_one() -> None:
    with pytest.raises(ValidationError):
        raw(name="")


def test_teardown_disables_only_the_listed_enabled_groups() -> None:
    from reconciler.integrations.slack_usergroups.planner import TEARDOWN, plan_teardown

    current = [
        have("oncall", "S1", users=["U1"]),
        have("leads", "S2", enabled=False),
        have("other", "S3"),
    ]
    actions = plan_teardown(["oncall", "leads", "gone"], current)
    assert [(a.type, a.target, a.detail) for a in actions] == [("disable_usergroup", "oncall", TEARDOWN)]
