"""GitLab's per-user rate budget, shared through a real valkey-server by every client of the user,
with the real GitlabClient against the GitLab test server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import valkey
from pydantic import SecretStr

from reconciler.cache import ValkeyCache
from reconciler.errors import RateLimited
from reconciler.fleet import Fleet
from reconciler.integrations.gitlab_members.client import GitlabClient
from reconciler.models.base import Action
from reconciler.models.spec import ReconcileSpec
from reconciler.models.task import ReconcileRef, TaskRecord, TaskStatus
from reconciler.runner import run_integration
from reconciler.settings import Settings
from reconciler.tasks import TaskStore, lock_key
from reconciler_testing.gitlab import DEVELOPER, OWNER, GitLabTestServer
from tests.valkey_server import ValkeyProcess

TOKEN = "glpat-Fleet-Budget-Token-0123456789"


@pytest.fixture
def gitlab() -> Iterator[GitLabTestServer]:
    with GitLabTestServer() as server:
        server.add_user("robot")
        server.add_user("alice")
        server.add_token(TOKEN, username="robot")
        yield server


def fleet(valkey_server: ValkeyProcess, **settings: float) -> Fleet:
    client = valkey.Valkey.from_url(valkey_server.url, decode_responses=True)
    return Fleet.create(client, Settings(**settings), fresh_after=time.time())  # type: ignore[arg-type]


def test_every_client_of_one_user_draws_from_one_budget(
    gitlab: GitLabTestServer, valkey_server: ValkeyProcess
) -> None:
    limits = {"gitlab_rate_limit": 4, "gitlab_rate_window_seconds": 1.0, "rate_limit_inline_wait_seconds": 5}
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        client = GitlabClient(gitlab.url, SecretStr(TOKEN), Settings(), fleet(valkey_server, **limits))
        client.current_user()  # the budget is the user's from here on
        for _ in range(3):
            client.find_user("alice")
            with lock:
                stamps.append(time.monotonic())
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(stamps) == 12
    stamps.sort()
    # 12 lookups by one user at 4 a second, from 4 clients: any 1 s window holds at most 4.
    for i in range(4, len(stamps)):
        assert stamps[i] - stamps[i - 4] >= 0.95
    assert gitlab.calls_matching("GET", "/users") == 12


def test_a_429_makes_every_client_of_the_user_wait(
    gitlab: GitLabTestServer, valkey_server: ValkeyProcess
) -> None:
    settings = {"rate_limit_inline_wait_seconds": 0.5, "rate_limit_retries": 0}
    first = GitlabClient(gitlab.url, SecretStr(TOKEN), Settings(), fleet(valkey_server, **settings))
    first.current_user()
    gitlab.rate_limit(1, retry_after=30)
    with pytest.raises(RateLimited):
        first.find_user("alice")
    # Another run of the same user does not even ask: the budget says wait (and it may not sleep).
    # (The token's user is known from the first run: even its GET /user waits.)
    second = GitlabClient(gitlab.url, SecretStr(TOKEN), Settings(), fleet(valkey_server, **settings))
    before = len(gitlab.calls)
    with pytest.raises(RateLimited) as caught:
        second.current_user()
    assert len(gitlab.calls) == before
    assert caught.value.retry_after is not None and caught.value.retry_after > 20


def test_a_new_run_of_a_known_token_draws_even_get_user_from_the_users_budget(
    gitlab: GitLabTestServer, valkey_server: ValkeyProcess
) -> None:
    """The server throttles per user (as GitLab does): no call of any run may go uncounted, not
    even the very first GET /user of a token, drawn before any run knew the token's user (it is
    charged to the user's budget as soon as the answer names the user)."""
    gitlab.user_rate_limit = (3, 5.0)
    limits = {
        "gitlab_rate_limit": 3,
        "gitlab_rate_window_seconds": 5.0,
        "rate_limit_inline_wait_seconds": 0.5,
    }
    settings = Settings(rate_limit_retries=0)
    first = GitlabClient(gitlab.url, SecretStr(TOKEN), settings, fleet(valkey_server, **limits))
    first.current_user()
    first.find_user("alice")
    second = GitlabClient(gitlab.url, SecretStr(TOKEN), settings, fleet(valkey_server, **limits))
    second.current_user()  # drawn from the user's budget: the token's user is known from the first run
    with pytest.raises(RateLimited):
        second.find_user("alice")  # the budget says wait: GitLab is not asked
    assert gitlab.rate_limited == 0
    assert gitlab.calls_matching("GET", "/users") == 1


def test_the_test_server_throttles_each_user(gitlab: GitLabTestServer) -> None:
    gitlab.user_rate_limit = (2, 30.0)
    client = GitlabClient(gitlab.url, SecretStr(TOKEN), Settings(rate_limit_retries=0))
    client.current_user()
    client.find_user("alice")
    with pytest.raises(RateLimited) as caught:
        client.find_user("alice")
    assert gitlab.rate_limited == 1
    assert caught.value.retry_after is not None and 25 <= caught.value.retry_after <= 30


def test_member_removals_also_draw_from_the_per_group_budget(
    gitlab: GitLabTestServer, valkey_server: ValkeyProcess
) -> None:
    """GitLab's Members API limit: removals per group (or project) and user, on top of the user's."""
    for i in range(3):
        gitlab.add_user(f"leaver{i}")
    gitlab.add_group("acme")
    gitlab.add_group("other")
    for group in ("acme", "other"):
        for i in range(3):
            gitlab.add_member("group", group, f"leaver{i}", 30)
    limits = {
        "gitlab_member_delete_limit": 2,
        "gitlab_rate_window_seconds": 30.0,
        "rate_limit_inline_wait_seconds": 0.5,
    }
    client = GitlabClient(gitlab.url, SecretStr(TOKEN), Settings(), fleet(valkey_server, **limits))
    client.current_user()
    for i in range(2):
        client.remove_member("group", "acme", gitlab.user_id(f"leaver{i}"), f"leaver{i}")
    with pytest.raises(RateLimited):
        client.remove_member("group", "acme", gitlab.user_id("leaver2"), "leaver2")
    client.remove_member("group", "other", gitlab.user_id("leaver0"), "leaver0")  # another group's budget
    assert set(gitlab.members("group", "acme")) == {"leaver2"}
    assert gitlab.calls_matching("DELETE", "/groups") == 3


def test_the_test_server_limits_removals_per_group_and_user(gitlab: GitLabTestServer) -> None:
    gitlab.member_delete_limit = (1, 30.0)
    gitlab.add_group("acme")
    gitlab.add_group("other")
    for group in ("acme", "other"):
        gitlab.add_member("group", group, "alice", 30)
    gitlab.add_user("bob")
    gitlab.add_member("group", "acme", "bob", 30)
    client = GitlabClient(gitlab.url, SecretStr(TOKEN), Settings(rate_limit_retries=0))
    client.remove_member("group", "acme", gitlab.user_id("alice"), "alice")
    client.remove_member("group", "other", gitlab.user_id("alice"), "alice")  # another group: its own limit
    with pytest.raises(RateLimited):
        client.remove_member("group", "acme", gitlab.user_id("bob"), "bob")
    assert gitlab.rate_limited == 1 and set(gitlab.members("group", "acme")) == {"bob"}


# --- write-throughs riding with the budget's round trips (fleet/riders.py) ---------------------


class TripLog(valkey.Connection):
    """A real connection that notes every request it sends (one round trip: a command, or a whole
    pipeline) as the names of the commands in it."""

    def __init__(self, *, trips: list[list[str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.trips = trips

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        chunks = [command] if isinstance(command, str | bytes) else command
        packed = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks)
        self.trips.append(_command_names(packed))
        super().send_packed_command(command, check_health)


def _command_names(packed: bytes) -> list[str]:
    """The command names in RESP-encoded requests (arrays of bulk strings, as a client sends them)."""
    names: list[str] = []
    at = 0
    while at < len(packed):
        end = packed.index(b"\r\n", at)
        count, at = int(packed[at + 1 : end]), end + 2
        for i in range(count):
            end = packed.index(b"\r\n", at)
            size, start = int(packed[at + 1 : end]), end + 2
            if i == 0:
                names.append(packed[start : start + size].decode().upper())
            at = start + size + 2
    return names


def logged_client(valkey_server: ValkeyProcess) -> tuple[valkey.Valkey, list[list[str]]]:
    trips: list[list[str]] = []
    pool = valkey.ConnectionPool.from_url(
        valkey_server.url, connection_class=TripLog, trips=trips, decode_responses=True
    )
    return valkey.Valkey(connection_pool=pool), trips


def members_spec(gitlab: GitLabTestServer, wanted: list[tuple[str, str]]) -> ReconcileSpec:
    members = [{"username": u, "accessLevel": level} for u, level in wanted]
    return ReconcileSpec.model_validate(
        {
            "integration": "gitlab-members",
            "credentials": {"secretRef": {"name": "gitlab-token"}},
            "gitlabMembers": {"url": gitlab.url, "groups": [{"path": "acme", "members": members}]},
        }
    )


@pytest.fixture
def four_writes(gitlab: GitLabTestServer) -> ReconcileSpec:
    """A spec whose run makes four member writes to group acme: two adds, an update, a removal."""
    for name in ("bob", "carol", "dave"):
        gitlab.add_user(name)
    gitlab.add_group("acme")
    gitlab.add_member("group", "acme", "robot", OWNER)
    gitlab.add_member("group", "acme", "alice", DEVELOPER)
    gitlab.add_member("group", "acme", "bob", DEVELOPER)
    return members_spec(gitlab, [("alice", "maintainer"), ("carol", "developer"), ("dave", "developer")])


def writes_key(gitlab: GitLabTestServer) -> str:
    user = gitlab.user_id("robot")
    return f"reconciler:fleet:gitlab:{urlsplit(gitlab.url).netloc}:user:{user}:member-writes:group:acme"


def test_a_runs_write_throughs_ride_with_its_next_budget_tokens(
    gitlab: GitLabTestServer, valkey_server: ValkeyProcess, four_writes: ReconcileSpec
) -> None:
    """Each write-through boards the trip of the next GitLab call's budget token; the last one is
    sent when the apply ends: all four are in Valkey when the run returns, for one trip of their
    own (a trip per write-through before)."""
    client, trips = logged_client(valkey_server)
    apply_from: list[int] = []
    run_fleet = Fleet.create(client, Settings(), fresh_after=time.time())
    outcome = run_integration(
        four_writes,
        SecretStr(TOKEN),
        Settings(),
        dry_run=False,
        fleet=run_fleet,
        on_planned=lambda _: apply_from.append(len(trips)),
    )
    assert outcome.ok and sorted(a.type for a in outcome.applied) == [
        "add_member",
        "add_member",
        "remove_member",
        "update_member",
    ]
    applying = trips[apply_from[0] :]
    tokens = [t for t in applying if t[-1] == "EVALSHA"]
    assert len(tokens) == 5  # one per call, and the removal's from the group's removal budget too
    assert sum(t.count("HSET") for t in applying) == 4
    assert len(applying) == len(tokens) + 1
    assert applying[-1] == ["HSET", "EXPIRE"], "the last write-through, when the apply ends"
    ids = {str(gitlab.user_id(u)) for u in ("alice", "bob", "carol", "dave")}
    assert set(client.hgetall(writes_key(gitlab))) == ids  # type: ignore[arg-type]


def test_in_the_operator_the_final_save_carries_the_last_write_through_before_the_lock_is_released(
    gitlab: GitLabTestServer, valkey_server: ValkeyProcess, four_writes: ReconcileSpec
) -> None:
    """A run of a task (the executor's steps: start, the planned save, the run, the final save):
    the write-throughs take no trip of their own; the last one goes in the final save's trip,
    ahead of the script that releases the run's lock."""
    client, trips = logged_client(valkey_server)
    store = TaskStore(ValkeyCache(client), ttl_seconds=600, history_size=5)
    ref = ReconcileRef(namespace="ns", name=f"members-{uuid.uuid4().hex[:6]}", generation=1)
    record = TaskRecord(reconcile=ref, integration="gitlab-members", status=TaskStatus.RUNNING)
    assert store.start(record, lock_ttl_seconds=30) is not None
    run_fleet = Fleet.create(client, Settings(), fresh_after=time.time(), carried=True)
    apply_from: list[int] = []

    def planned(actions: list[Action]) -> None:
        store.save_or_defer(record, riders=run_fleet.riders)
        apply_from.append(len(trips))

    outcome = run_integration(
        four_writes, SecretStr(TOKEN), Settings(), dry_run=False, fleet=run_fleet, on_planned=planned
    )
    assert outcome.ok and len(outcome.applied) == 4
    applying = trips[apply_from[0] :]
    assert len(applying) == 5 and all(t[-1] == "EVALSHA" for t in applying), "budget tokens only"
    assert len(run_fleet.riders) == 1 and len(client.hgetall(writes_key(gitlab))) == 3
    lock = lock_key(ref.namespace, ref.name)
    assert client.get(lock) == record.task_id
    record.status = TaskStatus.SUCCESS
    before = len(trips)
    store.save(record, new=False, unlock=(lock, record.task_id), riders=run_fleet.riders)
    assert trips[before:] == [["HSET", "EXPIRE", "EVALSHA"]], "one trip: the write-through, then the save"
    assert client.get(lock) is None and len(client.hgetall(writes_key(gitlab))) == 4
    assert len(run_fleet.riders) == 0
