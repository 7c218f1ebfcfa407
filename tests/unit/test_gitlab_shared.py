"""The GitLab user directory shared by every Reconcile on one instance, through a real valkey-server:
the real GitlabClient against the GitLab test server, whose call log counts the user lookups."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import valkey
from pydantic import SecretStr

from reconciler.fleet import Fleet
from reconciler.integrations.base import RunOutcome
from reconciler.integrations.gitlab_members.client import GitlabClient
from reconciler.integrations.gitlab_members.models import GitlabMemberState
from reconciler.integrations.gitlab_members.shared import GitlabInstanceCache
from reconciler.models.base import Action
from reconciler.models.spec import ReconcileSpec
from reconciler.runner import run_integration
from reconciler.settings import Settings
from reconciler_testing.gitlab import DEVELOPER, MAINTAINER, OWNER, REPORTER, GitLabTestServer
from tests.valkey_server import ValkeyProcess

TOKEN = "glpat-Shared-Directory-Token-0123"
SETTINGS = Settings(http_timeout_seconds=5, rate_limit_retries=2, transient_retries=1)
GROUPS = ("acme/one", "acme/two", "acme/three", "acme/four", "acme/five", "acme/six")


@pytest.fixture
def gitlab() -> Iterator[GitLabTestServer]:
    with GitLabTestServer() as server:
        for name in ("bot", "alice", "bob", "carol"):
            server.add_user(name)
        server.add_user("mallory", state="blocked")
        server.add_token(TOKEN, username="bot")
        server.add_group("acme")
        for path in GROUPS:
            server.add_group(path)
        server.add_member("group", "acme", "bot", OWNER)
        yield server


@pytest.fixture
def cache(valkey_server: ValkeyProcess, gitlab: GitLabTestServer) -> valkey.Valkey:
    client = valkey.Valkey.from_url(valkey_server.url, decode_responses=True)
    # Entries are keyed by the instance (host:port): a port reused from an earlier test starts empty.
    for key in client.scan_iter(f"reconciler:fleet:gitlab:{urlsplit(gitlab.url).netloc}:*"):
        client.delete(key)
    return client


def run(
    gitlab: GitLabTestServer,
    fleet_cache: valkey.Valkey | None,
    group: str,
    usernames: list[str],
    *,
    asked: float,
    dry_run: bool = True,
) -> RunOutcome:
    levels = [(u, "developer") for u in usernames]
    return run_levels(gitlab, fleet_cache, group, levels, asked=asked, dry_run=dry_run)


def run_levels(
    gitlab: GitLabTestServer,
    fleet_cache: valkey.Valkey | None,
    group: str,
    wanted: list[tuple[str, str]],
    *,
    asked: float,
    dry_run: bool = True,
) -> RunOutcome:
    members: list[dict[str, Any]] = [{"username": u, "accessLevel": level} for u, level in wanted]
    spec = ReconcileSpec.model_validate(
        {
            "integration": "gitlab-members",
            "credentials": {"secretRef": {"name": "gitlab-token"}},
            "gitlabMembers": {"url": gitlab.url, "groups": [{"path": group, "members": members}]},
        }
    )
    fleet = Fleet.create(fleet_cache, SETTINGS, fresh_after=asked) if fleet_cache is not None else None
    return run_integration(spec, SecretStr(TOKEN), SETTINGS, dry_run=dry_run, fleet=fleet)


def levels(gitlab: GitLabTestServer, group: str) -> dict[str, int]:
    return {user: member["access_level"] for user, member in gitlab.members("group", group).items()}


def lookups(gitlab: GitLabTestServer) -> int:
    return gitlab.calls_matching("GET", "/users")


def test_known_usernames_are_not_looked_up_again_by_any_reconcile_on_the_instance(
    gitlab: GitLabTestServer, cache: valkey.Valkey
) -> None:
    asked = time.time() - 1
    first = run(gitlab, cache, "acme/one", ["alice", "bob"], asked=asked)
    assert first.ok and [a.type for a in first.actions] == ["add_member", "add_member"]
    assert lookups(gitlab) == 2
    gitlab.reset_calls()

    # The same Reconcile's next periodic run, and another Reconcile queued since before the lookups.
    again = run(gitlab, cache, "acme/one", ["alice", "bob"], asked=time.time() - 60)
    assert again.ok and len(again.actions) == 2
    other = run(gitlab, cache, "acme/two", ["Alice", "bob", "carol"], asked=asked, dry_run=False)
    assert other.ok and len(other.applied) == 3
    assert set(gitlab.members("group", "acme/two")) == {"alice", "bob", "carol"}
    assert lookups(gitlab) == 1  # carol only

    # Asked for explicitly after the lookups: a user about to be added is looked up again.
    gitlab.reset_calls()
    fresh = run(gitlab, cache, "acme/three", ["alice"], asked=time.time())
    assert fresh.ok and lookups(gitlab) == 1


def test_a_blocked_user_is_still_unknown_with_or_without_a_lookup(
    gitlab: GitLabTestServer, cache: valkey.Valkey
) -> None:
    asked = time.time() - 1
    for _ in range(2):
        outcome = run(gitlab, cache, "acme/one", ["bob", "mallory"], asked=asked, dry_run=False)
        assert outcome.error is not None and outcome.error.reason == "UnknownUsers"
        assert "mallory (blocked)" in outcome.error.message
    assert lookups(gitlab) == 2  # bob and mallory, once each
    assert gitlab.members("group", "acme/one") == {}

    # Blocked after its entry was read: a run asked for since then does not trust that entry.
    gitlab.set_user_state("bob", "blocked")
    stale = run(gitlab, cache, "acme/two", ["bob"], asked=asked)
    assert stale.ok  # what a periodic run within snapshot_max_age_seconds may still plan (dry run)
    gitlab.reset_calls()
    asked_now = run(gitlab, cache, "acme/two", ["bob"], asked=time.time(), dry_run=False)
    assert asked_now.error is not None and asked_now.error.reason == "UnknownUsers"
    assert lookups(gitlab) == 1 and gitlab.members("group", "acme/two") == {}


def test_reconciles_asking_at_once_share_one_lookup(gitlab: GitLabTestServer, cache: valkey.Valkey) -> None:
    gitlab.latency = 0.05
    asked = time.time()
    outcomes: list[RunOutcome] = []
    start = threading.Barrier(len(GROUPS))

    def work(group: str) -> None:
        start.wait()
        outcomes.append(run(gitlab, cache, group, ["carol", "nobody"], asked=asked))

    threads = [threading.Thread(target=work, args=(g,)) for g in GROUPS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(outcomes) == len(GROUPS)
    for outcome in outcomes:
        assert outcome.error is not None and outcome.error.reason == "UnknownUsers"
        assert "nobody" in outcome.error.message
    assert lookups(gitlab) == 2  # carol and the unknown username, once each for six Reconciles


def test_without_valkey_a_run_looks_users_up_itself(gitlab: GitLabTestServer) -> None:
    dead = valkey.Valkey(host="127.0.0.1", port=1, socket_connect_timeout=0.5, decode_responses=True)
    outcome = run(gitlab, dead, "acme/one", ["alice", "mallory"], asked=time.time())
    assert outcome.error is not None and outcome.error.reason == "UnknownUsers"
    assert lookups(gitlab) == 2


def listings(gitlab: GitLabTestServer, group: str) -> int:
    return sum(
        1
        for c in gitlab.calls
        if c.method == "GET"
        and c.path.endswith("/members")
        and c.path.split("/")[-2] == quote(group, safe="")
    )


def test_runs_asking_at_once_share_one_listing_and_one_get_user(
    gitlab: GitLabTestServer, cache: valkey.Valkey
) -> None:
    gitlab.add_member("group", "acme/one", "alice", DEVELOPER)
    gitlab.latency = 0.05
    asked = time.time()
    outcomes: list[RunOutcome] = []
    start = threading.Barrier(6)

    def work() -> None:
        start.wait()
        outcomes.append(run(gitlab, cache, "acme/one", ["alice"], asked=asked))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(outcomes) == 6 and all(o.ok and o.actions == [] for o in outcomes)
    # Six runs of one token on one group: one GET /user and one member listing between them.
    assert gitlab.calls_matching("GET", "/user") - lookups(gitlab) == 1
    assert listings(gitlab, "acme/one") == 1

    # Asked for after that listing started: read again (once more, not once per run).
    gitlab.reset_calls()
    again = run(gitlab, cache, "acme/one", ["alice"], asked=time.time())
    assert again.ok and listings(gitlab, "acme/one") == 1


def test_our_own_writes_show_through_a_listing_read_before_them(
    gitlab: GitLabTestServer, cache: valkey.Valkey
) -> None:
    gitlab.add_member("group", "acme/one", "alice", DEVELOPER)
    gitlab.add_member("group", "acme/one", "bob", DEVELOPER)
    asked = time.time()
    first = run(gitlab, cache, "acme/one", ["alice"], asked=asked)  # a dry run lists the group
    assert [a.type for a in first.actions] == ["remove_member"]
    gitlab.reset_calls()

    # A run that may use that listing (asked for before it) applies: bob out, alice up, carol in.
    members = [("alice", "maintainer"), ("carol", "developer")]
    applied = run_levels(gitlab, cache, "acme/one", members, asked=asked, dry_run=False)
    assert applied.ok and sorted(a.type for a in applied.applied) == [
        "add_member",
        "remove_member",
        "update_member",
    ]
    assert listings(gitlab, "acme/one") == 0  # planned on the shared listing
    assert levels(gitlab, "acme/one") == {"alice": MAINTAINER, "carol": DEVELOPER}

    # The next run on the same old listing sees our writes: nothing to do, no GitLab read at all.
    gitlab.reset_calls()
    again = run_levels(gitlab, cache, "acme/one", members, asked=asked, dry_run=False)
    assert again.ok and again.actions == []
    assert listings(gitlab, "acme/one") == 0 and gitlab.write_calls() == []

    # A change made by someone else is seen by a run asked for after it (a fresh listing).
    gitlab.add_member("group", "acme/one", "bob", REPORTER)
    stale = run_levels(gitlab, cache, "acme/one", members, asked=asked)
    assert stale.actions == []  # within the freshness a periodic run allows: not seen yet
    fresh = run_levels(gitlab, cache, "acme/one", members, asked=time.time())
    assert [a.type for a in fresh.actions] == ["remove_member"]


def test_a_failed_write_drops_the_listing(gitlab: GitLabTestServer, cache: valkey.Valkey) -> None:
    asked = time.time()
    gitlab.fail(2, 500, "POST")  # both tries of the add (one retry) fail
    failed = run(gitlab, cache, "acme/one", ["alice"], asked=asked, dry_run=False)
    assert failed.error is not None and failed.failed_action is not None
    gitlab.reset_calls()
    # Whether the add happened is unknown: the next run lists the group again, even with an old request.
    retried = run(gitlab, cache, "acme/one", ["alice"], asked=asked, dry_run=False)
    assert retried.ok and listings(gitlab, "acme/one") == 1
    assert set(gitlab.members("group", "acme/one")) == {"alice"}


def test_the_token_scopes_are_read_once_for_every_writing_run_of_the_token(
    gitlab: GitLabTestServer, cache: valkey.Valkey
) -> None:
    asked = time.time()
    for group in GROUPS[:3]:
        outcome = run(gitlab, cache, group, ["alice"], asked=asked, dry_run=False)
        assert outcome.ok and len(outcome.applied) == 1
    assert gitlab.calls_matching("GET", "/personal_access_tokens/self") == 1


def test_a_rate_limited_write_is_not_written_through_and_keeps_the_listing(
    gitlab: GitLabTestServer, cache: valkey.Valkey
) -> None:
    settings = Settings(rate_limit_retries=0, rate_limit_inline_wait_seconds=0.5, transient_retries=0)
    members: list[dict[str, Any]] = [{"username": u, "accessLevel": "developer"} for u in ("alice", "bob")]
    spec = ReconcileSpec.model_validate(
        {
            "integration": "gitlab-members",
            "credentials": {"secretRef": {"name": "gitlab-token"}},
            "gitlabMembers": {"url": gitlab.url, "groups": [{"path": "acme/one", "members": members}]},
        }
    )
    asked = time.time()

    def apply() -> RunOutcome:
        fleet = Fleet.create(cache, settings, fresh_after=asked)
        return run_integration(spec, SecretStr(TOKEN), settings, dry_run=False, fleet=fleet)

    gitlab.rate_limit(1, retry_after=1, method="POST")  # the first add: 429, Retry-After 1 s
    first = apply()
    assert first.error is not None and first.error.reason == "RateLimited"
    assert gitlab.members("group", "acme/one") == {}
    time.sleep(1.2)
    gitlab.reset_calls()
    # The retry (same request) plans on the same listing: both adds still to do, no new listing.
    retried = apply()
    assert retried.ok and len(retried.applied) == 2
    assert set(gitlab.members("group", "acme/one")) == {"alice", "bob"}
    assert listings(gitlab, "acme/one") == 0


# --- write-throughs riding with the run's round trips, and what a failing Valkey costs ---------


def members_key(gitlab: GitLabTestServer, kind: str, group: str) -> str:
    """The key of a shared member listing (kind: "members"), or of its write-through overlay."""
    netloc = urlsplit(gitlab.url).netloc
    return f"reconciler:fleet:gitlab:{netloc}:user:{gitlab.user_id('bot')}:{kind}:group:{group}"


def apply_planned(
    gitlab: GitLabTestServer,
    fleet_cache: valkey.Valkey,
    wanted: list[tuple[str, str]],
    on_planned: Callable[[list[Action]], None],
) -> RunOutcome:
    """A run on acme/one asked for now, calling `on_planned` between its plan and its apply."""
    members: list[dict[str, Any]] = [{"username": u, "accessLevel": level} for u, level in wanted]
    spec = ReconcileSpec.model_validate(
        {
            "integration": "gitlab-members",
            "credentials": {"secretRef": {"name": "gitlab-token"}},
            "gitlabMembers": {"url": gitlab.url, "groups": [{"path": "acme/one", "members": members}]},
        }
    )
    fleet = Fleet.create(fleet_cache, SETTINGS, fresh_after=time.time())
    return run_integration(
        spec, SecretStr(TOKEN), SETTINGS, dry_run=False, fleet=fleet, on_planned=on_planned
    )


def test_a_write_through_and_a_later_forget_of_its_listing_lose_nothing_in_either_order(
    gitlab: GitLabTestServer, cache: valkey.Valkey
) -> None:
    """A write-through is stamped with its write's time, not its trip's, and lands in the overlay,
    not the listing: whether it lands before or after `forget` drops the listing, the next read
    lists again and shows the write (GitLab has it), and the entry never wins over that listing."""
    alice = gitlab.user_id("alice")
    for group, forget_first in (("acme/one", False), ("acme/two", True)):
        gitlab.add_member("group", group, "bob", DEVELOPER)
        asked = time.time()
        fleet = Fleet.create(cache, SETTINGS, fresh_after=asked)
        shared = GitlabInstanceCache(fleet, GitlabClient(gitlab.url, SecretStr(TOKEN), SETTINGS, fleet))
        shared.own_user()
        assert [m.username for m in shared.members("group", group) or []] == ["bob"]
        shared.client.add_member("group", group, alice, "alice", MAINTAINER, None)
        member = GitlabMemberState(id=alice, username="alice", access_level=MAINTAINER)
        shared.record_write("group", group, alice, member)
        assert len(fleet.riders) == 1 and cache.hlen(members_key(gitlab, "member-writes", group)) == 0
        if forget_first:
            shared.forget("group", group)
            shared.send_writes()
        else:
            shared.send_writes()
            shared.forget("group", group)
        assert cache.hlen(members_key(gitlab, "member-writes", group)) == 1
        assert not cache.exists(members_key(gitlab, "members", group))
        # Someone else changes alice meanwhile: the listing read next shows that, not our entry.
        gitlab.add_member("group", group, "alice", REPORTER)
        gitlab.reset_calls()
        later = run_levels(gitlab, cache, group, [("alice", "maintainer"), ("bob", "developer")], asked=asked)
        assert [(a.type, a.username) for a in later.actions] == [("update_member", "alice")]
        assert listings(gitlab, group) == 1


def test_a_failed_write_after_successful_ones_keeps_their_write_throughs_and_drops_the_listing(
    gitlab: GitLabTestServer, cache: valkey.Valkey
) -> None:
    """The add's write-through boards the update's budget token trip (before the update fails and
    the listing is dropped); the next run lists again and only retries the update."""
    gitlab.add_member("group", "acme/one", "bob", DEVELOPER)
    run(gitlab, cache, "acme/one", ["bob"], asked=time.time())  # a listing to drop
    gitlab.fail(2, 500, "PUT")  # both tries of the update (one retry) fail
    wanted = [("alice", "developer"), ("bob", "maintainer")]
    failed = apply_planned(gitlab, cache, wanted, lambda _: None)
    assert failed.error is not None and [a.type for a in failed.applied] == ["add_member"]
    written = cache.hgetall(members_key(gitlab, "member-writes", "acme/one"))
    assert set(written) == {str(gitlab.user_id("alice"))}  # type: ignore[arg-type]
    assert not cache.exists(members_key(gitlab, "members", "acme/one"))
    gitlab.reset_calls()
    retried = run_levels(gitlab, cache, "acme/one", wanted, asked=0.0, dry_run=False)
    assert [a.type for a in retried.applied] == ["update_member"] and listings(gitlab, "acme/one") == 1
    assert levels(gitlab, "acme/one") == {"alice": DEVELOPER, "bob": MAINTAINER}


def test_a_full_valkey_loses_only_the_write_throughs(
    gitlab: GitLabTestServer, cache: valkey.Valkey, caplog: pytest.LogCaptureFixture
) -> None:
    """Valkey fills up between the plan and the apply (noeviction): the writes are made anyway
    (without the shared budget), their write-throughs are refused with a warning, and a run asked
    for afterwards lists the group again and finds nothing to do."""
    old = cache.config_get("maxmemory*")

    def fill(actions: list[Action]) -> None:
        cache.config_set("maxmemory-policy", "noeviction")
        cache.config_set("maxmemory", "1")

    wanted = [("alice", "developer"), ("bob", "developer"), ("carol", "developer")]
    try:
        with caplog.at_level(logging.WARNING):
            outcome = apply_planned(gitlab, cache, wanted, fill)
    finally:
        cache.config_set("maxmemory", old["maxmemory"])
        cache.config_set("maxmemory-policy", old["maxmemory-policy"])
    assert outcome.ok and len(outcome.applied) == 3
    assert set(gitlab.members("group", "acme/one")) == {"alice", "bob", "carol"}
    assert "Valkey refused the write-through of member" in caplog.text
    assert cache.hlen(members_key(gitlab, "member-writes", "acme/one")) == 0
    gitlab.reset_calls()
    again = apply_planned(gitlab, cache, wanted, lambda _: None)
    assert again.ok and again.actions == [] and listings(gitlab, "acme/one") == 1


def test_a_dead_valkey_loses_only_the_write_throughs(
    gitlab: GitLabTestServer, doomed: ValkeyProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """Valkey dies between the plan and the apply: the writes are made anyway, the write-throughs
    still queued at the apply's end are dropped with a warning, and the run succeeds."""
    client = valkey.Valkey.from_url(doomed.url, decode_responses=True, socket_timeout=1)
    wanted = [("alice", "developer"), ("bob", "developer")]
    with caplog.at_level(logging.WARNING):
        outcome = apply_planned(gitlab, client, wanted, lambda _: doomed.stop())
    assert outcome.ok and len(outcome.applied) == 2
    assert set(gitlab.members("group", "acme/one")) == {"alice", "bob"}
    assert "the shared snapshot learns of the write-through of member" in caplog.text
