"""GitLab's per-user rate budget, shared through a real valkey-server by every client of the user,
with the real GitlabClient against the GitLab test server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import valkey
from pydantic import SecretStr

from reconciler.errors import RateLimited
from reconciler.fleet import Fleet
from reconciler.integrations.gitlab_members.client import GitlabClient
from reconciler.settings import Settings
from reconciler_testing.gitlab import GitLabTestServer
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
