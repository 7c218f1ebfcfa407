"""The Slack user-group integration end to end: the real SlackClient (slack-sdk) against SlackTestServer.

Everything goes through `run_integration`, as the operator and the command line call it; nothing is
monkeypatched. The server's call log is the oracle for how many Slack calls a run costs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from reconciler.integrations.base import RunOutcome
from reconciler.integrations.slack_usergroups.client import SlackClient
from reconciler.integrations.slack_usergroups.service import _METHODS
from reconciler.models.spec import ReconcileSpec
from reconciler.runner import run_integration
from reconciler.settings import Settings
from reconciler_testing.slack import DEFAULT_SCOPES, TEAM_ID, SlackTestServer

TOKEN = "xoxb-1111-2222-very-secret-token"
READS = ["usergroups.list", "users.list", "conversations.list"]
SETTINGS = Settings(http_timeout_seconds=5, rate_limit_retries=2, transient_retries=1)

ALICE, BOB, CAROL, DAVE = "alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"


@pytest.fixture
def slack() -> Iterator[SlackTestServer]:
    """One server per test: it has no state reset, and starting one takes a millisecond."""
    with SlackTestServer() as server:
        server.add_token(TOKEN)
        yield server


@pytest.fixture
def ids(slack: SlackTestServer) -> dict[str, str]:
    """A small workspace: four members (dave deactivated), a bot and three public channels."""
    return {
        ALICE: slack.add_user(ALICE),
        BOB: slack.add_user(BOB),
        CAROL: slack.add_user(CAROL),
        DAVE: slack.add_user(DAVE, deleted=True),
        "bot": slack.add_user("bot@example.com", is_bot=True),
        "#general": slack.add_channel("general"),
        "#eng": slack.add_channel("eng"),
        "#ops": slack.add_channel("ops"),
        "#old": slack.add_channel("old", is_archived=True),
    }


def run(
    slack: SlackTestServer | str,
    usergroups: list[dict[str, Any]],
    *,
    token: str = TOKEN,
    dry_run: bool = False,
    settings: Settings = SETTINGS,
    **kwargs: Any,
) -> RunOutcome:
    """One run as the operator does it; `slack` is the server or just an api_url."""
    spec = ReconcileSpec.model_validate(
        {
            "integration": "slack-usergroups",
            "credentials": {"secretRef": {"name": "slack-token"}},
            "slackUsergroups": {
                "apiUrl": slack if isinstance(slack, str) else slack.api_url,
                "usergroups": usergroups,
            },
        }
    )
    return run_integration(spec, SecretStr(token), settings, dry_run=dry_run, **kwargs)


def methods(slack: SlackTestServer) -> list[str]:
    return [call.method for call in slack.calls]


def writes(slack: SlackTestServer) -> list[str]:
    return [call.method for call in slack.write_calls()]


def members(slack: SlackTestServer, handle: str) -> set[str]:
    return set(slack.usergroup(handle)["users"])


def channels(slack: SlackTestServer, handle: str) -> set[str]:
    return set(slack.usergroup(handle)["prefs"]["channels"])


def enabled(slack: SlackTestServer, handle: str) -> bool:
    return bool(slack.usergroup(handle)["date_delete"] == 0)


SPEC: list[dict[str, Any]] = [
    {
        "handle": "engineers",
        "name": "Engineering",
        "description": "Builds things",
        "users": [ALICE, "Bob@Example.com"],
        "channels": ["#eng", "general"],
    },
    {"handle": "operators", "name": "Operations", "users": [CAROL], "channels": ["ops"]},
    {"handle": "alumni", "name": "Alumni"},
]


# --- converging -----------------------------------------------------------------------------------


def test_first_run_makes_slack_match_the_spec(slack: SlackTestServer, ids: dict[str, str]) -> None:
    outcome = run(slack, SPEC)

    assert outcome.ok, outcome.error
    assert outcome.applied == outcome.actions
    assert [(a.target, a.type) for a in outcome.actions] == [
        ("engineers", "create_usergroup"),
        ("engineers", "add_users"),
        ("operators", "create_usergroup"),
        ("operators", "add_users"),
        ("alumni", "create_usergroup"),
        ("alumni", "disable_usergroup"),
    ]
    eng = slack.usergroup("engineers")
    assert (eng["name"], eng["description"]) == ("Engineering", "Builds things")
    assert members(slack, "engineers") == {ids[ALICE], ids[BOB]}
    assert channels(slack, "engineers") == {ids["#eng"], ids["#general"]}
    assert enabled(slack, "engineers")
    assert members(slack, "operators") == {ids[CAROL]}
    assert channels(slack, "operators") == {ids["#ops"]}
    assert enabled(slack, "operators")
    assert slack.usergroup("alumni")["name"] == "Alumni"
    assert members(slack, "alumni") == set()
    assert channels(slack, "alumni") == set()
    assert not enabled(slack, "alumni")
    assert len(slack.usergroups()) == 3


def test_second_run_writes_nothing_and_reads_three_pages(slack: SlackTestServer, ids: dict[str, str]) -> None:
    assert run(slack, SPEC).ok
    slack.reset_calls()

    outcome = run(slack, SPEC)

    assert outcome.ok, outcome.error
    assert outcome.actions == []
    assert slack.write_calls() == []
    assert methods(slack) == READS


def test_dry_run_plans_but_writes_nothing(slack: SlackTestServer, ids: dict[str, str]) -> None:
    outcome = run(slack, SPEC, dry_run=True)

    assert outcome.ok, outcome.error
    assert outcome.dry_run
    assert len(outcome.actions) == 6
    assert outcome.applied == []
    assert slack.write_calls() == []
    assert methods(slack) == READS
    assert slack.usergroups() == []


def test_three_usergroups_cost_3_reads_and_6_writes_then_3_reads_and_0_writes(
    slack: SlackTestServer, ids: dict[str, str]
) -> None:
    spec = [
        {"handle": "engineers", "name": "Engineering", "users": [ALICE, BOB], "channels": ["eng"]},
        {"handle": "operators", "name": "Operations", "users": [CAROL], "channels": ["ops"]},
        {"handle": "leads", "name": "Leads", "users": [ALICE], "channels": ["general"]},
    ]
    assert run(slack, spec).ok
    assert methods(slack) == [
        *READS,
        "usergroups.create",
        "usergroups.users.update",
        "usergroups.create",
        "usergroups.users.update",
        "usergroups.create",
        "usergroups.users.update",
    ]
    assert len(slack.calls) == 9
    assert len(slack.write_calls()) == 6

    slack.reset_calls()
    assert run(slack, spec).ok
    assert methods(slack) == READS
    assert len(slack.calls) == 3


def test_add_and_remove_in_one_group_is_one_users_update(slack: SlackTestServer, ids: dict[str, str]) -> None:
    slack.add_usergroup("engineers", name="Engineering", users=[ids[ALICE], ids[BOB]])

    outcome = run(slack, [{"handle": "engineers", "name": "Engineering", "users": [BOB, CAROL]}])

    assert outcome.ok, outcome.error
    assert [a.type for a in outcome.actions] == ["add_users", "remove_users"]
    assert outcome.applied == outcome.actions
    assert writes(slack) == ["usergroups.users.update"]
    assert members(slack, "engineers") == {ids[BOB], ids[CAROL]}
    # users and channels only: no channels named, so no conversations.list
    assert methods(slack) == ["usergroups.list", "users.list", "usergroups.users.update"]


def test_metadata_updates_including_clearing_channels_and_description(
    slack: SlackTestServer, ids: dict[str, str]
) -> None:
    slack.add_usergroup(
        "engineers",
        name="Engineering",
        description="old",
        users=[ids[ALICE]],
        channels=[ids["#eng"], ids["#ops"]],
    )
    spec = [
        {"handle": "engineers", "name": "Eng", "description": "", "users": [ALICE], "channels": ["general"]}
    ]

    outcome = run(slack, spec)

    assert outcome.ok, outcome.error
    assert writes(slack) == ["usergroups.update"]
    group = slack.usergroup("engineers")
    assert (group["name"], group["description"]) == ("Eng", "")
    assert channels(slack, "engineers") == {ids["#general"]}

    slack.reset_calls()
    spec[0]["channels"] = []
    assert run(slack, spec).ok
    assert writes(slack) == ["usergroups.update"]
    assert channels(slack, "engineers") == set()

    slack.reset_calls()
    assert run(slack, spec).actions == []
    assert slack.write_calls() == []


def test_groups_outside_the_spec_are_left_alone(slack: SlackTestServer, ids: dict[str, str]) -> None:
    slack.add_usergroup("other", name="Other", users=[ids[ALICE]], channels=[ids["#ops"]])
    before = slack.usergroup("other")

    assert run(slack, [{"handle": "engineers", "name": "Engineering", "users": [BOB]}]).ok

    assert slack.usergroup("other") == before


def test_paginates_450_users_and_250_channels(slack: SlackTestServer) -> None:
    user_ids = [slack.add_user(f"user{n:03d}@example.com") for n in range(450)]
    channel_ids = [slack.add_channel(f"chan{n:03d}") for n in range(250)]
    wanted = [0, 199, 200, 449]  # first and last of pages 1 and 2, and the very last member
    spec = [
        {
            "handle": "everyone",
            "name": "Everyone",
            "users": [f"user{n:03d}@example.com" for n in wanted],
            "channels": ["chan000", "chan249"],
        }
    ]

    outcome = run(slack, spec)

    assert outcome.ok, outcome.error
    assert slack.calls_to("users.list") == 3  # 200 + 200 + 50
    assert slack.calls_to("conversations.list") == 2  # 200 + 50
    assert {
        c.params.get("limit") for c in slack.calls if c.method.endswith(".list") and "limit" in c.params
    } == {"200"}
    assert members(slack, "everyone") == {user_ids[n] for n in wanted}
    assert channels(slack, "everyone") == {channel_ids[0], channel_ids[249]}

    slack.reset_calls()
    assert run(slack, spec).actions == []
    assert methods(slack) == ["usergroups.list", *["users.list"] * 3, *["conversations.list"] * 2]


def test_disable_then_reenable(slack: SlackTestServer, ids: dict[str, str]) -> None:
    spec: list[dict[str, Any]] = [{"handle": "engineers", "name": "Engineering", "users": [ALICE, BOB]}]
    assert run(slack, spec).ok
    assert enabled(slack, "engineers")

    slack.reset_calls()
    spec[0]["users"] = []
    outcome = run(slack, spec)
    assert outcome.ok, outcome.error
    assert [a.type for a in outcome.actions] == ["disable_usergroup"]
    assert writes(slack) == ["usergroups.disable"]
    assert not enabled(slack, "engineers")

    slack.reset_calls()
    assert run(slack, spec).actions == []  # disabled and empty: nothing more to do
    assert slack.write_calls() == []

    slack.reset_calls()
    spec[0]["users"] = [BOB]
    outcome = run(slack, spec)
    assert outcome.ok, outcome.error
    assert [a.type for a in outcome.actions] == ["enable_usergroup", "remove_users"]
    assert writes(slack) == ["usergroups.enable", "usergroups.users.update"]
    assert enabled(slack, "engineers")
    assert members(slack, "engineers") == {ids[BOB]}

    slack.reset_calls()
    assert run(slack, spec).actions == []
    assert slack.write_calls() == []


# --- refusing bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("users", "mentioned"),
    [
        pytest.param(["nobody@example.com", ALICE], ["nobody@example.com"], id="unknown"),
        pytest.param([DAVE], [f"deactivated Slack users: {DAVE}"], id="deactivated"),
        pytest.param(["bot@example.com"], ["bot@example.com"], id="bot"),
    ],
)
def test_unknown_users_fail_the_run_before_any_write(
    slack: SlackTestServer, ids: dict[str, str], users: list[str], mentioned: list[str]
) -> None:
    spec = [
        {"handle": "ok", "name": "Fine", "users": [ALICE]},
        {"handle": "engineers", "name": "Eng", "users": users},
    ]

    outcome = run(slack, spec)

    assert outcome.error is not None
    assert outcome.error.reason == "UnknownUsers"
    assert outcome.error.permanent
    for text in mentioned:
        assert text in outcome.error.message
    assert outcome.actions == [] and outcome.applied == []
    assert slack.write_calls() == []
    assert methods(slack) == ["usergroups.list", "users.list"]


def test_unknown_or_archived_channels_fail_the_run_before_any_write(
    slack: SlackTestServer, ids: dict[str, str]
) -> None:
    outcome = run(
        slack, [{"handle": "engineers", "name": "Eng", "users": [ALICE], "channels": ["old", "nope"]}]
    )

    assert outcome.error is not None
    assert outcome.error.reason == "UnknownChannels"
    assert "#nope, #old" in outcome.error.message
    assert slack.write_calls() == []


def test_name_of_an_unmanaged_group_is_a_conflict(slack: SlackTestServer, ids: dict[str, str]) -> None:
    slack.add_usergroup("platform", name="Engineering", users=[ids[ALICE]])

    outcome = run(slack, [{"handle": "engineers", "name": "Engineering", "users": [ALICE]}])

    assert outcome.error is not None
    assert outcome.error.reason == "Conflict"
    assert "@platform" in outcome.error.message
    assert slack.write_calls() == []


def test_handle_taken_by_a_member_is_a_conflict_on_create(
    slack: SlackTestServer, ids: dict[str, str]
) -> None:
    """Handles are unique among groups, members and channels: only Slack knows, at create time."""
    outcome = run(slack, [{"handle": "alice", "name": "Alice's group", "users": [BOB]}])

    assert outcome.error is not None
    assert outcome.error.reason == "Conflict"
    assert "handle_already_exists" in outcome.error.message
    assert outcome.failed_action is not None and outcome.failed_action.type == "create_usergroup"
    assert outcome.applied == []
    assert slack.write_calls() == []


# --- credentials ----------------------------------------------------------------------------------


def test_invalid_token_is_unauthorized(slack: SlackTestServer, ids: dict[str, str]) -> None:
    outcome = run(slack, SPEC, token="xoxb-not-registered")

    assert outcome.error is not None
    assert outcome.error.reason == "Unauthorized"
    assert outcome.error.permanent
    assert "invalid_auth" in outcome.error.message
    assert methods(slack) == ["usergroups.list"]


def test_inactive_token_is_unauthorized(slack: SlackTestServer, ids: dict[str, str]) -> None:
    slack.add_token("xoxb-revoked", inactive=True)

    outcome = run(slack, SPEC, token="xoxb-revoked")

    assert outcome.error is not None
    assert outcome.error.reason == "Unauthorized"


def test_token_without_usergroups_write_is_missing_scope_before_any_write(
    slack: SlackTestServer, ids: dict[str, str]
) -> None:
    slack.add_token("xoxb-read-only", DEFAULT_SCOPES - {"usergroups:write"})

    outcome = run(slack, SPEC, token="xoxb-read-only")

    assert outcome.error is not None
    assert outcome.error.reason == "MissingScope"
    assert outcome.error.permanent
    assert "usergroups:write" in outcome.error.message
    assert outcome.actions and outcome.applied == []
    assert outcome.failed_action is None
    assert methods(slack) == READS  # the scopes came with the reads: no write was even tried
    assert slack.write_calls() == []


def test_token_without_write_scope_still_plans_a_dry_run(slack: SlackTestServer, ids: dict[str, str]) -> None:
    slack.add_token("xoxb-read-only", DEFAULT_SCOPES - {"usergroups:write"})

    outcome = run(slack, SPEC, token="xoxb-read-only", dry_run=True)

    assert outcome.error is None
    assert outcome.actions


def test_token_without_read_scope_is_missing_scope(slack: SlackTestServer, ids: dict[str, str]) -> None:
    slack.add_token("xoxb-no-emails", DEFAULT_SCOPES - {"users:read"})

    outcome = run(slack, SPEC, token="xoxb-no-emails")

    assert outcome.error is not None
    assert outcome.error.reason == "MissingScope"
    assert "users:read" in outcome.error.message
    assert slack.write_calls() == []


# --- rate limits and outages ----------------------------------------------------------------------


def test_three_429s_on_users_update_still_converge_with_one_write(
    slack: SlackTestServer, ids: dict[str, str]
) -> None:
    slack.rate_limit("usergroups.users.update", times=3, retry_after=0)

    outcome = run(
        slack,
        [{"handle": "engineers", "name": "Engineering", "users": [ALICE]}],
        settings=Settings(http_timeout_seconds=5, rate_limit_retries=5),
    )

    assert outcome.ok, outcome.error
    assert slack.calls_to("usergroups.users.update") == 4
    assert [c.status for c in slack.calls if c.method == "usergroups.users.update"] == [429, 429, 429, 200]
    assert writes(slack) == ["usergroups.create", "usergroups.users.update"]
    assert members(slack, "engineers") == {ids[ALICE]}

    slack.reset_calls()
    assert run(slack, [{"handle": "engineers", "name": "Engineering", "users": [ALICE]}]).actions == []


def test_persistent_429s_are_a_transient_rate_limited_error(
    slack: SlackTestServer, ids: dict[str, str]
) -> None:
    slack.rate_limit("usergroups.list", times=10, retry_after=0)

    outcome = run(slack, SPEC, settings=Settings(http_timeout_seconds=5, rate_limit_retries=1))

    assert outcome.error is not None
    assert outcome.error.reason == "RateLimited"
    assert not outcome.error.permanent
    assert outcome.error.retry_after == 1.0  # Retry-After: 0, floored so a reschedule is never a hot loop
    assert slack.calls_to("usergroups.list") == 2  # the call and one retry
    assert slack.write_calls() == []


def test_persistent_429s_on_a_write_stop_the_run(slack: SlackTestServer, ids: dict[str, str]) -> None:
    slack.rate_limit("usergroups.create", times=10, retry_after=0)

    outcome = run(slack, SPEC, settings=Settings(http_timeout_seconds=5, rate_limit_retries=0))

    assert outcome.error is not None
    assert outcome.error.reason == "RateLimited"
    assert outcome.applied == []
    assert outcome.failed_action == outcome.actions[0]
    assert slack.calls_to("usergroups.create") == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_on_a_read_is_retried(slack: SlackTestServer, ids: dict[str, str], status: int) -> None:
    slack.fail("users.list", times=1, status=status)

    outcome = run(slack, SPEC, settings=Settings(http_timeout_seconds=5, transient_retries=1))

    assert outcome.ok, outcome.error
    assert [c.status for c in slack.calls if c.method == "users.list"] == [status, 200]
    assert members(slack, "engineers") == {ids[ALICE], ids[BOB]}


def test_persistent_5xx_is_transient_slack_unavailable(slack: SlackTestServer, ids: dict[str, str]) -> None:
    slack.fail("usergroups.list", times=10, status=503)

    outcome = run(slack, SPEC, settings=Settings(http_timeout_seconds=5, transient_retries=0))

    assert outcome.error is not None
    assert outcome.error.reason == "SlackUnavailable"
    assert not outcome.error.permanent
    assert "503" in outcome.error.message
    assert slack.calls_to("usergroups.list") == 1


def test_unreachable_slack_is_transient(ids: dict[str, str]) -> None:
    with SlackTestServer() as gone:
        api_url = gone.api_url
    # stopped: its port now refuses connections

    outcome = run(api_url, SPEC, settings=Settings(http_timeout_seconds=5, transient_retries=0))

    assert outcome.error is not None
    assert outcome.error.reason == "SlackUnavailable"
    assert not outcome.error.permanent


# --- adopting a group an earlier, lost attempt created ----------------------------------------------


def test_create_adopts_a_group_that_appeared_after_planning(
    slack: SlackTestServer, ids: dict[str, str]
) -> None:
    spec = [{"handle": "engineers", "name": "Engineering", "users": [ALICE, BOB], "channels": ["eng"]}]
    planned: list[str] = []

    def create_behind_our_back(actions: list[Any]) -> None:
        planned.extend(a.type for a in actions)
        slack.add_usergroup("engineers", name="Engineering", channels=[ids["#eng"]])

    outcome = run(slack, spec, on_planned=create_behind_our_back)

    assert planned == ["create_usergroup", "add_users"]
    assert outcome.ok, outcome.error
    assert [(c.method, c.error) for c in slack.calls if c.method.startswith("usergroups.")] == [
        ("usergroups.list", None),
        ("usergroups.create", "name_already_exists"),
        ("usergroups.list", None),
        ("usergroups.users.update", None),
    ]
    assert len(slack.usergroups()) == 1
    assert members(slack, "engineers") == {ids[ALICE], ids[BOB]}

    slack.reset_calls()
    assert run(slack, spec).actions == []


def test_create_does_not_adopt_a_different_group_holding_the_name(
    slack: SlackTestServer, ids: dict[str, str]
) -> None:
    spec = [{"handle": "engineers", "name": "Engineering", "users": [ALICE]}]

    outcome = run(
        slack,
        spec,
        on_planned=lambda _: slack.add_usergroup("platform", name="Engineering", users=[ids[BOB]]),
    )

    assert outcome.error is not None
    assert outcome.error.reason == "Conflict"
    assert "name_already_exists" in outcome.error.message
    assert outcome.applied == []
    assert slack.write_calls() == []
    assert members(slack, "platform") == {ids[BOB]}


# --- the token stays secret -------------------------------------------------------------------------


def test_the_token_never_appears_in_errors_or_logs(
    slack: SlackTestServer, ids: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    slack.add_token("xoxb-read-only-secret", DEFAULT_SCOPES - {"usergroups:write"})
    settings = Settings(http_timeout_seconds=5, rate_limit_retries=0, transient_retries=0)
    outcomes = {"xoxb-unknown-secret-token": run(slack, SPEC, token="xoxb-unknown-secret-token")}
    outcomes["xoxb-read-only-secret"] = run(slack, SPEC, token="xoxb-read-only-secret")
    outcomes[TOKEN + "-unknown-users"] = run(
        slack, [{"handle": "x", "name": "X", "users": ["no@example.com"]}]
    )
    slack.rate_limit(None, times=1, retry_after=0)
    outcomes[TOKEN + "-429"] = run(slack, SPEC, settings=settings)
    slack.fail(None, times=1, status=500)
    outcomes[TOKEN + "-500"] = run(slack, SPEC, settings=settings)
    outcomes[TOKEN + "-ok"] = run(slack, SPEC)

    assert outcomes[TOKEN + "-ok"].ok
    assert caplog.text  # slack-sdk logged its requests at DEBUG
    secrets = [TOKEN, "xoxb-unknown-secret-token", "xoxb-read-only-secret"]
    for outcome in outcomes.values():
        if outcome.error is not None:
            texts = [
                str(outcome.error),
                repr(outcome.error),
                outcome.error.message,
                repr(outcome.error.__cause__),
            ]
            for secret in secrets:
                assert all(secret not in text for text in texts)
    for secret in secrets:
        assert secret not in caplog.text
    assert {o.error.reason for o in outcomes.values() if o.error} == {
        "Unauthorized",
        "MissingScope",
        "UnknownUsers",
        "RateLimited",
        "SlackUnavailable",
    }


def test_removing_every_channel_names_the_channels_in_the_plan(
    slack: SlackTestServer, ids: dict[str, str]
) -> None:
    """No group names a channel, yet the plan's detail must still say which channels go."""
    slack.add_usergroup("engineers", name="Engineering", users=[ids[ALICE]], channels=[ids["#ops"]])

    spec = [{"handle": "engineers", "name": "Engineering", "users": [ALICE], "channels": []}]
    outcome = run(slack, spec)

    assert outcome.ok, outcome.error
    assert [a.detail for a in outcome.actions] == ["channels -#ops"]
    assert channels(slack, "engineers") == set()
    slack.reset_calls()
    assert run(slack, spec).actions == []
    assert methods(slack) == ["usergroups.list", "users.list"]  # no channels anywhere: no channel read


def test_unmanaged_groups_are_read_only_for_their_names() -> None:
    """Other groups' members are neither validated nor carried: a malformed member list there is
    ignored, while the name they hold is still protected."""
    from pydantic import SecretStr

    from reconciler.integrations.slack_usergroups.client import SlackClient
    from reconciler.settings import Settings
    from reconciler_testing.slack import SlackTestServer

    with SlackTestServer() as server:
        server.add_token("xoxb-names-only-token-1")
        alice = server.add_user("alice@example.com")
        server.add_usergroup("managed", name="Managed", users=[alice])
        server.add_usergroup("other", name="Other", users=[alice])
        client = SlackClient(SecretStr("xoxb-names-only-token-1"), server.api_url, Settings(valkey_url="x"))
        groups = {g.handle: g for g in client.list_usergroups(managed=["managed"])}
    assert groups["managed"].users == frozenset({alice})
    assert groups["other"].name == "Other" and groups["other"].users == frozenset()


def test_team_id_comes_from_auth_test_once_per_client(slack: SlackTestServer) -> None:
    client = SlackClient(SecretStr(TOKEN), slack.api_url, SETTINGS)
    assert client.team_id() == TEAM_ID
    assert client.team_id() == TEAM_ID
    assert methods(slack) == ["auth.test"]


def test_the_token_queued_for_a_runs_first_call_is_for_the_method_that_call_uses(
    slack: SlackTestServer, ids: dict[str, str]
) -> None:
    """`queue_first_call` names the first action's Slack method from its own table (`_METHODS`), so
    that table must follow `apply_one`: every action type, applied first, makes that call first."""
    steps: list[list[str]] = [[ALICE], [ALICE, BOB], [ALICE], [], [BOB]]
    names = ["Engineering", "Engineering", "Eng", "Eng", "Eng"]
    seen: set[type[Any]] = set()
    for users, name in zip(steps, names, strict=True):
        slack.reset_calls()
        outcome = run(slack, [{"handle": "engineers", "name": name, "users": users}])
        assert outcome.ok, outcome.error
        first = type(outcome.actions[0])
        assert writes(slack)[0] == _METHODS[first], first.__name__
        seen.add(first)
    slack.reset_calls()
    slack.add_usergroup("pair", name="Pair", users=[ids[ALICE], ids[BOB]])
    outcome = run(slack, [{"handle": "pair", "name": "Pair", "users": [ALICE]}])
    assert writes(slack)[0] == _METHODS[type(outcome.actions[0])]
    seen.add(type(outcome.actions[0]))
    assert seen == set(_METHODS)
