"""Runs that share one Slack workspace through Valkey: shared reads, their freshness, write-through
and deactivated users. Real SlackClient, Slack test server and valkey-server; nothing mocked."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import valkey
from pydantic import SecretStr

from reconciler.cache import ValkeyCache
from reconciler.claims import Claimer, ClaimOwner, ClaimStore
from reconciler.fleet import Fleet
from reconciler.integrations.base import RunOutcome
from reconciler.integrations.slack_usergroups.client import SlackClient
from reconciler.models.spec import ReconcileSpec
from reconciler.runner import run_integration
from reconciler.settings import Settings
from reconciler_testing.slack import SlackTestServer
from tests.valkey_server import ValkeyProcess

TOKEN = "xoxb-3333-4444-shared-secret-token"
SETTINGS = Settings(http_timeout_seconds=5, rate_limit_retries=2, slack_rate_window_seconds=0.01)
ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


@pytest.fixture
def slack() -> Iterator[SlackTestServer]:
    # A workspace of its own per test: shared state is keyed by it.
    with SlackTestServer(team_id=f"T{uuid.uuid4().hex[:10].upper()}") as server:
        server.add_token(TOKEN)
        for email in (ALICE, BOB, CAROL):
            server.add_user(email)
        server.add_channel("eng")
        yield server


@pytest.fixture
def cache(valkey_server: ValkeyProcess) -> valkey.Valkey:
    return valkey.Valkey.from_url(valkey_server.url, decode_responses=True)


def run(
    slack: SlackTestServer,
    cache: valkey.Valkey,
    groups: list[dict[str, Any]],
    *,
    asked: float,
    settings: Settings = SETTINGS,
) -> RunOutcome:
    spec = ReconcileSpec.model_validate(
        {
            "integration": "slack-usergroups",
            "credentials": {"secretRef": {"name": "slack-token"}},
            "slackUsergroups": {"apiUrl": slack.api_url, "usergroups": groups},
        }
    )
    fleet = Fleet.create(cache, settings, fresh_after=asked)
    return run_integration(spec, SecretStr(TOKEN), settings, dry_run=False, fleet=fleet)


def group(handle: str, users: list[str], **extra: Any) -> dict[str, Any]:
    return {"handle": handle, "name": f"Group {handle}", "users": users, **extra}


def test_runs_share_reads_but_never_one_older_than_their_request(
    slack: SlackTestServer, cache: valkey.Valkey
) -> None:
    first = run(slack, cache, [group("one", [ALICE])], asked=time.time())
    assert first.ok and [a.type for a in first.applied] == ["create_usergroup", "add_users"]
    slack.reset_calls()

    # Asked before the last read started (say, queued behind a busy worker): no Slack call at all.
    shared = run(slack, cache, [group("two", [BOB], channels=["eng"])], asked=0.0)
    assert shared.ok
    assert [c.method for c in slack.calls if c.method.endswith("list")] == ["conversations.list"]
    slack.reset_calls()

    # Asked now: reads the user groups again (the directory is shared for its refresh period).
    again = run(slack, cache, [group("one", [ALICE])], asked=time.time())
    assert again.ok and again.actions == []
    assert [c.method for c in slack.calls] == ["usergroups.list"]


def test_own_writes_win_over_a_snapshot_read_before_them(
    slack: SlackTestServer, cache: valkey.Valkey
) -> None:
    assert run(slack, cache, [group("team", [ALICE])], asked=time.time()).ok
    changed = run(slack, cache, [group("team", [ALICE, BOB])], asked=time.time())
    assert [a.type for a in changed.applied] == ["add_users"]
    slack.reset_calls()
    # An interval run may use the snapshot read before that write: the write-through overlay
    # tells it Bob is in already, so it writes nothing (and reads nothing).
    later = run(slack, cache, [group("team", [ALICE, BOB])], asked=0.0)
    assert later.ok and later.actions == []
    assert slack.calls == []


def test_both_writes_of_a_run_reach_the_snapshot_before_it_returns(
    slack: SlackTestServer, cache: valkey.Valkey
) -> None:
    """The create's write-through rides with the users update's budget token, the users update's
    is sent when the apply ends: a later run sharing the snapshot read before both sees both."""
    assert run(slack, cache, [group("early", [CAROL])], asked=time.time()).ok  # a snapshot exists
    created = run(slack, cache, [group("pair", [ALICE, BOB])], asked=0.0)
    assert [a.type for a in created.applied] == ["create_usergroup", "add_users"]
    slack.reset_calls()
    later = run(slack, cache, [group("pair", [ALICE, BOB])], asked=0.0)
    assert later.ok and later.actions == []
    assert slack.calls == []


def test_a_valkey_that_forgot_the_read_script_still_serves_the_shared_reads(
    slack: SlackTestServer, cache: valkey.Valkey
) -> None:
    """The plan's first reads go in one pipeline, the user-group script by its hash: a restarted
    Valkey answers NOSCRIPT, and the script is then sent itself."""
    assert run(slack, cache, [group("kept", [ALICE])], asked=time.time()).ok
    cache.script_flush()
    slack.reset_calls()
    again = run(slack, cache, [group("kept", [ALICE])], asked=0.0)
    assert again.ok and again.actions == []
    assert slack.calls == []


def test_the_plans_reads_ride_with_the_claims_and_a_conflict_reads_for_the_rest(
    slack: SlackTestServer, cache: valkey.Valkey
) -> None:
    """With claims, the plan's first reads go in the claims' round trip; when a claim leaves a group
    out, those reads (asked for every group) are not the plan's: it reads for the rest itself."""
    store = ClaimStore(ValkeyCache(cache))
    assert run(slack, cache, [group("solo", [ALICE]), group("taken", [BOB])], asked=time.time()).ok
    slack.reset_calls()

    def claimed_run(groups: list[dict[str, Any]], me: ClaimOwner) -> RunOutcome:
        spec = ReconcileSpec.model_validate(
            {
                "integration": "slack-usergroups",
                "credentials": {"secretRef": {"name": "slack-token"}},
                "slackUsergroups": {"apiUrl": slack.api_url, "usergroups": groups},
            }
        )
        fleet = Fleet.create(cache, SETTINGS, fresh_after=0.0)
        claim = Claimer(store, me, lambda o: True)
        return run_integration(spec, SecretStr(TOKEN), SETTINGS, dry_run=False, fleet=fleet, claim=claim)

    me = ClaimOwner(uid=uuid.uuid4().hex, namespace="ns", name="me")
    same = claimed_run([group("solo", [ALICE]), group("taken", [BOB])], me)
    assert same.ok and same.actions == [] and slack.calls == []
    store.release(me, same.claims[1].target.key)  # type: ignore[index]
    store.claim(ClaimOwner(uid=uuid.uuid4().hex, namespace="ns", name="other"), same.claims[1].target)  # type: ignore[index]
    changed = claimed_run([group("solo", [ALICE, BOB]), group("taken", [ALICE])], me)
    assert changed.error is not None and changed.error.reason == "Conflict"
    assert [(a.type, a.target) for a in changed.applied] == [("add_users", "solo")]
    assert len(slack.usergroup("solo")["users"]) == 2


def test_a_user_deactivated_after_the_sweep_is_never_written(
    slack: SlackTestServer, cache: valkey.Valkey
) -> None:
    assert run(slack, cache, [group("crew", [ALICE])], asked=time.time()).ok
    slack.deactivate_user(CAROL)  # the shared directory still says "active"
    outcome = run(slack, cache, [group("crew", [ALICE, CAROL])], asked=time.time())
    assert outcome.error is not None and outcome.error.reason == "UnknownUsers"
    assert CAROL in outcome.error.message
    assert len(slack.usergroup("crew")["users"]) == 1
    # ...and the directory learnt it: the next run stops at planning, without trying the write.
    slack.reset_calls()
    again = run(slack, cache, [group("crew", [ALICE, CAROL])], asked=time.time())
    assert again.error is not None and again.error.reason == "UnknownUsers"
    assert slack.write_calls() == []


def test_a_new_groups_stale_users_are_checked_before_it_is_created(
    slack: SlackTestServer, cache: valkey.Valkey
) -> None:
    settings_now = Settings(**{**SETTINGS.model_dump(), "directory_recheck_seconds": 0})
    assert run(slack, cache, [group("first", [ALICE])], asked=time.time()).ok
    slack.deactivate_user(BOB)
    spec = ReconcileSpec.model_validate(
        {
            "integration": "slack-usergroups",
            "credentials": {"secretRef": {"name": "slack-token"}},
            "slackUsergroups": {"apiUrl": slack.api_url, "usergroups": [group("second", [BOB])]},
        }
    )
    fleet = Fleet.create(cache, settings_now, fresh_after=time.time())
    outcome = run_integration(spec, SecretStr(TOKEN), settings_now, dry_run=False, fleet=fleet)
    assert outcome.error is not None and outcome.error.reason == "UnknownUsers"
    assert outcome.applied == []
    with pytest.raises(KeyError):
        slack.usergroup("second")  # a fresh read would have refused it: nothing was created


def test_a_fleet_asked_for_at_once_shares_one_read_that_still_sees_a_change_made_meanwhile(
    slack: SlackTestServer, cache: valkey.Valkey
) -> None:
    """Four Reconciles asked for again 0.1 s apart (a script annotating them): one usergroups.list
    for all four, started after the last request, so the change someone made in Slack just before
    that request is seen and repaired, though the first run was asked for before it."""
    squads = [f"squad{i}" for i in range(4)]
    for handle in squads:
        assert run(slack, cache, [group(handle, [ALICE, BOB])], asked=time.time()).ok
    gather = Settings(**{**SETTINGS.model_dump(), "shared_read_coalesce_seconds": 1.0})
    someone_else = SlackClient(SecretStr(TOKEN), slack.api_url, SETTINGS)
    alice = someone_else.lookup_user(ALICE)
    assert alice is not None
    slack.reset_calls()
    outcomes: dict[str, RunOutcome] = {}
    start = time.monotonic() + 0.1

    def ask(i: int) -> None:
        time.sleep(max(0.0, start + 0.1 * i - time.monotonic()))
        if i == 3:  # removed in Slack's UI, then the request
            someone_else.set_users(slack.usergroup("squad3")["id"], (alice.id,))
        squad = [group(squads[i], [ALICE, BOB])]
        outcomes[squads[i]] = run(slack, cache, squad, asked=time.time(), settings=gather)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert slack.calls_to("usergroups.list") == 1
    assert all(o.ok for o in outcomes.values())
    assert [o.actions for o in (outcomes[s] for s in squads[:3])] == [[], [], []]
    assert [a.type for a in outcomes["squad3"].applied] == ["add_users"]
    assert len(slack.usergroup("squad3")["users"]) == 2


def test_runs_of_a_new_token_started_at_once_ask_auth_test_once(
    slack: SlackTestServer, cache: valkey.Valkey
) -> None:
    """The first runs of a fleet all need the workspace id at the same moment: one asks Slack, the
    others wait for its answer in Valkey (auth.test is keyed by the token's hash)."""
    start = threading.Barrier(8)
    teams: list[str] = []

    def first_run() -> None:
        client = SlackClient(
            SecretStr(TOKEN), slack.api_url, SETTINGS, Fleet.create(cache, SETTINGS, fresh_after=0)
        )
        start.wait()
        teams.append(client.team_id())

    threads = [threading.Thread(target=first_run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert teams == [slack.team_id] * 8
    assert slack.calls_to("auth.test") == 1


def test_a_tokens_workspace_is_read_from_valkey_once_a_minute_per_process(
    slack: SlackTestServer, cache: valkey.Valkey, valkey_server: ValkeyProcess
) -> None:
    """Later runs in the process take the token's "team|scopes" from a short local copy (one round
    trip fewer a run); a client of another Valkey never sees it."""

    def team_of(client: valkey.Valkey) -> str:
        fleet = Fleet.create(client, SETTINGS, fresh_after=0)
        return SlackClient(SecretStr(TOKEN), slack.api_url, SETTINGS, fleet).team_id()

    assert team_of(cache) == slack.team_id
    cache.delete(*cache.keys("*slack-token*"))
    assert team_of(cache) == slack.team_id
    assert slack.calls_to("auth.test") == 1, "taken from the local copy, not asked again"
    other = valkey.Valkey.from_url(valkey_server.url, decode_responses=True)
    assert team_of(other) == slack.team_id
    assert slack.calls_to("auth.test") == 2, "the other Valkey's client asked Slack again"


def test_a_cold_fleet_sweeps_the_directory_while_another_worker_reads_the_user_groups(
    cache: valkey.Valkey,
) -> None:
    """Two runs of a pool of two start on a cold cache: one sweeps users.list while the other
    fetches usergroups.list, at the same time instead of one after the other (each call takes
    0.3 s here), and each read is still made once."""
    latency = 0.3
    with SlackTestServer(team_id=f"T{uuid.uuid4().hex[:10].upper()}", latency=latency) as slack:
        slack.add_token(TOKEN)
        for email in (ALICE, BOB):
            slack.add_user(email)
        settings = Settings(
            **{**SETTINGS.model_dump(), "max_workers": 2, "shared_read_coalesce_seconds": 5.0}
        )
        SlackClient(
            SecretStr(TOKEN), slack.api_url, settings, Fleet.create(cache, settings, fresh_after=0)
        ).team_id()
        slack.reset_calls()
        start = threading.Barrier(2)
        outcomes: list[RunOutcome] = []

        def first_run(i: int) -> None:
            start.wait()
            outcomes.append(
                run(slack, cache, [group(f"cold{i}", [ALICE, BOB])], asked=time.time(), settings=settings)
            )

        threads = [threading.Thread(target=first_run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(outcomes) == 2 and all(o.ok for o in outcomes)
        reads = {c.method: c.at for c in slack.calls if c.method in ("users.list", "usergroups.list")}
        assert slack.calls_to("users.list") == slack.calls_to("usergroups.list") == 1
        assert abs(reads["users.list"] - reads["usergroups.list"]) < latency, "one read waited for the other"
