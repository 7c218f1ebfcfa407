"""Claims of external targets against a real valkey-server: atomic under threads, released only by
their owner, taken over only from an owner that is gone; and a run that skips a claimed target."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from reconciler.cache import ValkeyCache
from reconciler.claims import (
    MAX_STATUS_CLAIMS,
    MAX_STATUS_CLAIMS_BYTES,
    Claimer,
    ClaimOwner,
    ClaimsNotWritable,
    ClaimState,
    ClaimStore,
    claim_key,
    claims_status,
    owner_index_key,
    peek_owners,
)
from reconciler.errors import TransientError
from reconciler.fleet.riders import Riders
from reconciler.integrations.gitlab_members.models import gitlab_target
from reconciler.integrations.slack_usergroups.models import slack_usergroup_target
from reconciler.models.spec import ReconcileSpec
from reconciler.models.target import Target, normalize_base_url
from reconciler.runner import run_integration
from reconciler.settings import Settings
from reconciler_testing.slack import TEAM_ID, SlackTestServer
from tests.valkey_server import ValkeyProcess, free_port

THREADS = 16


@pytest.fixture
def store(valkey_server: ValkeyProcess) -> ClaimStore:
    return ClaimStore(ValkeyCache.from_url(valkey_server.url))


def owner(name: str = "rec", namespace: str = "ns") -> ClaimOwner:
    return ClaimOwner(uid=str(uuid.uuid4()), namespace=namespace, name=name)


def target() -> Target:
    return slack_usergroup_target("T0TEST", f"oncall-{uuid.uuid4().hex[:8]}")


def in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run `work(i)` in `count` threads released at once; return the results in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_exactly_one_of_many_concurrent_claimants_wins(store: ClaimStore) -> None:
    t = target()
    owners = [owner(f"rec-{i}") for i in range(THREADS)]
    holders = in_threads(THREADS, lambda i: store.claim(owners[i], t))
    winners = {h.uid for h in holders}
    assert len(winners) == 1, "every claimant must see the same single owner"
    (winner,) = [o for o in owners if o.uid in winners]
    assert store.owner_of(t) == winner
    holding = [o for o in owners if t.key in store.held_by(o)]
    assert holding == [winner], "only the winner's index lists the target"


def test_claim_is_idempotent_for_its_owner(store: ClaimStore) -> None:
    t, me, other = target(), owner("me"), owner("other")
    assert store.claim(me, t) == me
    assert store.claim(me, t) == me
    assert store.claim(other, t) == me
    assert store.held_by(me) == {t.key}
    assert store.held_by(other) == set()


def test_only_the_owner_releases_and_the_next_claimant_then_wins(store: ClaimStore) -> None:
    t, first, second = target(), owner("first"), owner("second")
    store.claim(first, t)
    assert store.release(second, t.key) is False
    assert store.owner_of(t) == first
    assert store.release(first, t.key) is True
    assert store.owner_of(t) is None
    assert store.held_by(first) == set()
    assert store.claim(second, t) == second


def test_release_all_but_keeps_the_listed_targets(store: ClaimStore) -> None:
    me = owner()
    kept, dropped = target(), target()
    store.claim(me, kept)
    store.claim(me, dropped)
    assert store.release_all_but(me, [kept.key]) == [dropped.key]
    assert store.owner_of(kept) == me
    assert store.owner_of(dropped) is None
    assert store.release_all_but(me) == [kept.key]
    assert store.held_by(me) == set()


def test_release_all_never_drops_a_claim_someone_else_took_meanwhile(store: ClaimStore) -> None:
    """The index of a stale owner may still list a target another Reconcile took over."""
    t, stale, new = target(), owner("stale"), owner("new")
    store.claim(stale, t)
    store.cache.client.set(claim_key(t.key), new.to_json())  # as if `new` took it over
    assert store.release_all_but(stale) == []
    assert store.owner_of(t) == new


def test_take_over_is_a_compare_and_set_under_threads(store: ClaimStore) -> None:
    t, gone = target(), owner("gone")
    store.claim(gone, t)
    owners = [owner(f"rec-{i}") for i in range(THREADS)]
    results = in_threads(THREADS, lambda i: store.take_over(t, gone, owners[i]))
    assert results.count(True) == 1
    winner = owners[results.index(True)]
    assert store.owner_of(t) == winner
    assert store.held_by(winner) == {t.key}
    assert store.held_by(gone) == set()


def test_claimer_takes_over_only_from_an_owner_that_is_gone(store: ClaimStore) -> None:
    t, alive, dead, me = target(), owner("alive"), owner("dead"), owner("me")
    store.claim(alive, t)
    (state,) = Claimer(store, me, lambda o: True)([t])
    assert (state.held, state.owner) == (False, alive)
    store.release(alive, t.key)
    store.claim(dead, t)
    asked: list[ClaimOwner] = []
    (state,) = Claimer(store, me, lambda o: asked.append(o) or False)([t])
    assert asked == [dead]
    assert (state.held, state.owner) == (True, me)
    assert store.owner_of(t) == me


def test_claim_many_claims_each_target_then_reads_what_its_owner_holds(store: ClaimStore) -> None:
    """One round trip for a run's claims: the same answers as `claim` per target, then `held_by`."""
    me, other, free, theirs, old = owner("me"), owner("other"), target(), target(), target()
    store.claim(other, theirs)
    store.claim(me, old)
    holders, held = store.claim_many(me, [free, theirs])
    assert holders == [me, other]
    assert held == {free.key, old.key} == store.held_by(me)
    assert store.claim_many(me, []) == ([], {free.key, old.key})


def test_claimer_releases_the_targets_no_longer_listed(store: ClaimStore) -> None:
    me, a, b = owner(), target(), target()
    Claimer(store, me, lambda o: True)([a, b])
    Claimer(store, me, lambda o: True)([a])
    assert store.owner_of(a) == me
    assert store.owner_of(b) is None


def test_a_peeking_claimer_changes_nothing(store: ClaimStore) -> None:
    me, other, free, taken = owner("me"), owner("other"), target(), target()
    store.claim(other, taken)
    states = Claimer(store, me, lambda o: False, peek=True)([free, taken])
    assert [(s.held, s.owner.display) for s in states] == [(True, "ns/me"), (False, "ns/other")]
    assert store.owner_of(free) is None
    assert store.owner_of(taken) == other
    assert [s.owner for s in peek_owners(store, [free, taken])] == [other]


def test_a_corrupt_claim_is_replaced(store: ClaimStore) -> None:
    t, me = target(), owner()
    store.cache.client.set(claim_key(t.key), "not json")
    assert store.claim(me, t) == me
    assert store.owner_of(t) == me


def test_an_unreachable_valkey_is_a_transient_error() -> None:
    store = ClaimStore(ValkeyCache.from_url(f"valkey://127.0.0.1:{free_port()}/0", timeout=0.5))
    with pytest.raises(TransientError) as caught:
        store.claim(owner(), target())
    assert caught.value.reason == "CacheUnavailable"


def test_target_keys_name_the_account_not_the_spelling() -> None:
    assert normalize_base_url("HTTPS://GitLab.Example.com:443/") == "https://gitlab.example.com"
    assert normalize_base_url("http://gitlab.local:8080/gitlab/") == "http://gitlab.local:8080/gitlab"
    one = gitlab_target("https://gitlab.example.com/", "group", "Acme/Platform")
    two = gitlab_target("https://GITLAB.example.com:443", "group", "acme/platform")
    assert one.key == two.key == "gitlab:https://gitlab.example.com:group:acme/platform"
    assert one.name == "group:Acme/Platform"
    assert slack_usergroup_target("T1", "oncall").key != slack_usergroup_target("T2", "oncall").key


# --- a run with a claimed target -----------------------------------------------------------------

TOKEN = "xoxb-claims-token-0123456789"
SETTINGS = Settings(http_timeout_seconds=5, rate_limit_retries=1, transient_retries=1)


@pytest.fixture
def slack() -> Iterator[SlackTestServer]:
    with SlackTestServer() as server:
        server.add_token(TOKEN)
        server.add_user("alice@example.com")
        server.add_user("bob@example.com")
        yield server


def _spec(api_url: str, *handles: str) -> ReconcileSpec:
    return ReconcileSpec.model_validate(
        {
            "integration": "slack-usergroups",
            "credentials": {"secretRef": {"name": "slack"}},
            "slackUsergroups": {
                "apiUrl": api_url,
                "usergroups": [
                    {"handle": h, "name": f"Group {h}", "users": ["bob@example.com"]} for h in handles
                ],
            },
        }
    )


def test_a_run_writes_nothing_to_a_target_another_reconcile_owns(
    store: ClaimStore, slack: SlackTestServer
) -> None:
    mine, theirs = f"mine-{uuid.uuid4().hex[:6]}", f"theirs-{uuid.uuid4().hex[:6]}"
    other = owner("first", "team-a")
    store.claim(other, slack_usergroup_target(TEAM_ID, theirs))
    me = owner("second", "team-b")

    outcome = run_integration(
        _spec(slack.api_url, mine, theirs),
        SecretStr(TOKEN),
        SETTINGS,
        dry_run=False,
        claim=Claimer(store, me, lambda o: True),
    )

    assert outcome.error is not None and outcome.error.reason == "Conflict"
    assert outcome.error.permanent
    assert "team-a/first" in outcome.error.message and f"@{theirs}" in outcome.error.message
    assert {a.target for a in outcome.applied} == {mine}, "the other target still converges"
    assert slack.usergroup(mine)["handle"] == mine
    assert theirs not in {g["handle"] for g in slack.usergroups()}, "nothing was written to the claimed one"
    assert [(s.target.name, s.held) for s in outcome.claims or []] == [(mine, True), (theirs, False)]
    assert store.held_by(me) == {slack_usergroup_target(TEAM_ID, mine).key}
    assert owner_index_key(me.uid) != owner_index_key(other.uid)


def test_status_lists_conflicts_first_and_stays_small() -> None:
    me, other = owner("me"), owner("other")
    states = [ClaimState(target(), me, held=True) for _ in range(60)]
    states.append(ClaimState(target(), other, held=False))
    status = claims_status(states)
    assert status[0]["held"] is False and status[0]["owner"] == "ns/other"
    assert len(status) == MAX_STATUS_CLAIMS
    long_targets = [ClaimState(gitlab_target("https://g.example", "group", "a/" * 500), me, True)] * 40
    assert len(json.dumps(claims_status(long_targets))) <= MAX_STATUS_CLAIMS_BYTES


def test_a_full_valkey_still_lets_claims_be_read(store: ClaimStore) -> None:
    """OOM (noeviction): claims cannot be written, but reads still keep a non-owner out."""
    theirs, free, me, other = target(), target(), owner("me"), owner("other")
    store.claim(other, theirs)
    client = store.cache.client
    old = client.config_get("maxmemory*")
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    try:
        with pytest.raises(ClaimsNotWritable):
            store.claim(me, free)
        states = Claimer(store, me, lambda o: False)([theirs, free])
    finally:
        client.config_set("maxmemory", old["maxmemory"])
        client.config_set("maxmemory-policy", old["maxmemory-policy"])
    assert [(s.held, s.owner.display) for s in states] == [(False, "ns/other"), (True, "ns/me")]
    assert store.owner_of(theirs) == other, "no take-over while writes are refused"
    assert store.owner_of(free) is None, "not recorded; the next run records it"


def queue_read(riders: Riders, key: str, replies: list[Any]) -> None:
    riders.add(f"a test read of {key}", lambda pipe: pipe.get(key), 1, replies.extend)


def test_queued_reads_ride_with_the_claims_round_trip(store: ClaimStore) -> None:
    client = store.cache.client
    key = f"reconciler:test:{uuid.uuid4().hex}"
    client.set(key, "snapshot")
    riders, replies = Riders(), []  # type: ignore[var-annotated]
    queue_read(riders, key, replies)
    me, mine = owner("me"), target()
    states = Claimer(store, me, lambda o: True)([mine], riders)
    assert [(s.held, s.owner) for s in states] == [(True, me)]
    assert store.owner_of(mine) == me
    assert replies == ["snapshot"]
    assert len(riders) == 0


def test_claims_with_riders_on_a_valkey_that_forgot_the_script(store: ClaimStore) -> None:
    """NOSCRIPT (a restarted Valkey): the riders landed; the claims script is sent itself."""
    store.cache.client.script_flush()
    riders, replies = Riders(), []  # type: ignore[var-annotated]
    queue_read(riders, "reconciler:test:absent", replies)
    me, mine = owner("me"), target()
    holders, held = store.claim_many(me, [mine], riders)
    assert holders == [me] and held == {mine.key}
    assert replies == [None]


def test_claims_with_riders_on_a_full_valkey_still_read_and_refuse_the_writes(store: ClaimStore) -> None:
    """OOM: the reads riding along are answered; the claims are refused (ClaimsNotWritable), so the
    Claimer goes target by target (reads keep a non-owner out), as without riders."""
    client = store.cache.client
    key = f"reconciler:test:{uuid.uuid4().hex}"
    client.set(key, "snapshot")
    theirs, free, me, other = target(), target(), owner("me"), owner("other")
    store.claim(other, theirs)
    riders, replies = Riders(), []  # type: ignore[var-annotated]
    queue_read(riders, key, replies)
    old = client.config_get("maxmemory*")
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    try:
        states = Claimer(store, me, lambda o: False)([theirs, free], riders)
    finally:
        client.config_set("maxmemory", old["maxmemory"])
        client.config_set("maxmemory-policy", old["maxmemory-policy"])
    assert replies == ["snapshot"]
    assert [(s.held, s.owner.display) for s in states] == [(False, "ns/other"), (True, "ns/me")]
    assert store.owner_of(free) is None


def test_claims_with_riders_on_a_dead_valkey_keep_them_queued(tmp_path: Any) -> None:
    server = ValkeyProcess(tmp_path / "doomed").start()
    store = ClaimStore(ValkeyCache.from_url(server.url, timeout=1))
    riders, replies = Riders(), []  # type: ignore[var-annotated]
    queue_read(riders, "reconciler:test:x", replies)
    server.stop()
    with pytest.raises(TransientError):
        store.claim_many(owner("me"), [target()], riders)
    assert len(riders) == 1 and replies == []
