"""The run deadline and the bounds on rate limits and paging, with the real clients against hostile
test servers: 429 with `Retry-After: 86400`, a body dripped one byte at a time, endless next pages.

Each hostile case must end within a couple of seconds, with the right reason: the worker is free.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from reconciler import deadline
from reconciler.errors import RateLimited, Timeout
from reconciler.integrations.base import RunOutcome
from reconciler.integrations.transport import inline_wait, retry_after_seconds
from reconciler.models.spec import ReconcileSpec
from reconciler.runner import run_integration
from reconciler.settings import Settings
from reconciler_testing.gitlab import GitLabTestServer
from reconciler_testing.slack import SlackTestServer

SLACK_TOKEN = "xoxb-1111-2222-deadline-token"
GITLAB_TOKEN = "glpat-deadline-token-0000"
FAST = Settings(
    http_timeout_seconds=30,  # longer than every test: only the deadline may end these runs
    run_deadline_seconds=1.5,
    rate_limit_inline_wait_seconds=2,
    retry_after_max_seconds=900,
    transient_retries=1,
    rate_limit_retries=3,
    max_pages=5,
)


# --- the Deadline itself ------------------------------------------------------------------------


def test_timeouts_never_pass_the_deadline_and_an_expired_one_raises_timeout() -> None:
    run = deadline.Deadline(0.3)
    assert run.timeout(30, "x") <= 0.3
    assert run.timeout(0.1, "x") == 0.1
    time.sleep(0.35)
    assert run.expired and run.remaining() == 0
    with pytest.raises(Timeout) as caught:
        run.check("listing users")
    assert caught.value.reason == "Timeout" and not caught.value.permanent
    assert "listing users" in caught.value.message
    assert "RECONCILER_RUN_DEADLINE_SECONDS" in caught.value.message


def test_outside_a_run_nothing_is_bounded_and_a_run_scope_is_per_thread() -> None:
    assert not deadline.current().bounded and deadline.current().timeout(30, "x") == 30
    seen: list[float] = []
    with deadline.run_deadline(5) as run:
        assert deadline.current() is run
        other = threading.Thread(target=lambda: seen.append(deadline.current().seconds))
        other.start()
        other.join()
    assert seen == [math.inf]  # another worker's thread is not bound by this run
    assert not deadline.current().bounded


def test_the_guard_cuts_a_read_blocked_on_a_socket_at_the_deadline() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.settimeout(30)
        run = deadline.Deadline(0.3)
        started = time.monotonic()
        run.guard(ours)
        assert ours.recv(10) == b""  # woken by the shutdown, not by the 30 s timeout
        assert time.monotonic() - started < 2
        run.close()


def test_a_socket_guarded_after_the_deadline_is_cut_at_once() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        run = deadline.Deadline(0.01)
        time.sleep(0.05)
        run.guard(ours)
        run.guard(ours)
        ours.settimeout(5)
        assert ours.recv(10) == b""
        run.close()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "86400"}, 86400),
        ({"retry-after": ["3"]}, 3),
        ({"Retry-After": "1.5"}, 1.5),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0),  # a date in the past: now
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date(headers: dict[str, Any], expected: float | None) -> None:
    assert retry_after_seconds(headers) == expected


def test_only_short_waits_are_slept_in_place_and_long_ones_are_capped() -> None:
    assert inline_wait(1, "Slack users.list", FAST) == 1
    with pytest.raises(RateLimited) as caught:
        inline_wait(86400, "Slack users.list", FAST)
    assert caught.value.retry_after == 900 and "86400s" in caught.value.message
    with deadline.run_deadline(0.5), pytest.raises(RateLimited):
        inline_wait(1, "Slack users.list", FAST)  # short, but longer than what is left of the run


# --- Slack --------------------------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[SlackTestServer]:
    with SlackTestServer() as server:
        server.add_token(SLACK_TOKEN)
        for name in ("alice", "bob"):
            server.add_user(f"{name}@example.com")
        yield server


def run_slack(slack: SlackTestServer, settings: Settings = FAST, groups: int = 1) -> tuple[RunOutcome, float]:
    spec = ReconcileSpec.model_validate(
        {
            "integration": "slack-usergroups",
            "credentials": {"secretRef": {"name": "slack-token"}},
            "slackUsergroups": {
                "apiUrl": slack.api_url,
                "usergroups": [
                    {"handle": f"team-{i}", "name": f"Team {i}", "users": ["alice@example.com"]}
                    for i in range(groups)
                ],
            },
        }
    )
    started = time.monotonic()
    outcome = run_integration(spec, SecretStr(SLACK_TOKEN), settings, dry_run=False)
    return outcome, time.monotonic() - started


# The operator always connects through the host allow-list (egress.py); plan/apply may not.
EGRESS = pytest.mark.parametrize(
    "settings",
    [FAST, FAST.model_copy(update={"enforce_allowed_hosts": True, "allowed_hosts": "127.0.0.1"})],
    ids=["direct", "allow-list"],
)


@EGRESS
def test_slack_retry_after_a_day_gives_the_worker_back_at_once(
    slack: SlackTestServer, settings: Settings
) -> None:
    slack.rate_limit(None, 1000, retry_after=86400)
    outcome, took = run_slack(slack, settings)
    assert outcome.error is not None and outcome.error.reason == "RateLimited"
    assert outcome.error.retry_after == 900  # capped: a server cannot park a Reconcile for a day
    assert len(slack.calls) == 1 and took < 5  # no retry, no sleep (a day, or the inline cap)


@EGRESS
def test_slack_short_retry_after_is_waited_out_in_place(slack: SlackTestServer, settings: Settings) -> None:
    slack.rate_limit("usergroups.list", 1, retry_after=1)
    outcome, took = run_slack(slack, settings.model_copy(update={"run_deadline_seconds": 10}))
    assert outcome.ok, outcome.error
    assert 1 <= took < 8


@EGRESS
def test_slack_slow_drip_body_is_cut_at_the_deadline(slack: SlackTestServer, settings: Settings) -> None:
    slack.drip_seconds = 0.05  # every byte well within the 30 s socket timeout
    outcome, took = run_slack(slack, settings)
    assert outcome.error is not None and outcome.error.reason == "Timeout", outcome.error
    assert 1.4 <= took < 6  # dripped in full, the answers take over a minute


def test_slack_endless_pages_stop_at_the_page_cap(slack: SlackTestServer) -> None:
    slack.endless_pages = True
    slack.page_limit_cap = 1
    outcome, _ = run_slack(slack, FAST.model_copy(update={"run_deadline_seconds": 30}))
    assert outcome.error is not None and outcome.error.reason == "BadResponse"
    assert "5 pages" in outcome.error.message
    assert slack.calls_to("users.list") == 5


def test_slack_timeout_keeps_what_was_applied(slack: SlackTestServer) -> None:
    """The first group is created, then setting its users drips past the deadline: the outcome says
    Timeout with the creation applied, and the next run finishes without creating it again."""
    slack.drip_methods = frozenset({"usergroups.users.update"})
    slack.drip_seconds = 0.1
    outcome, _ = run_slack(slack, FAST.model_copy(update={"run_deadline_seconds": 2}), groups=2)
    assert outcome.error is not None and outcome.error.reason == "Timeout"
    assert [a.type for a in outcome.applied] == ["create_usergroup"]
    slack.drip_seconds = 0
    slack.reset_calls()
    again, _ = run_slack(slack, FAST.model_copy(update={"run_deadline_seconds": 10}), groups=2)
    assert again.ok, again.error
    assert [c.method for c in slack.write_calls()].count("usergroups.create") == 1  # only team-1


# --- GitLab -------------------------------------------------------------------------------------


@pytest.fixture
def gitlab() -> Iterator[GitLabTestServer]:
    with GitLabTestServer() as server:
        for name in ("bot", "alice", "bob"):
            server.add_user(name)
        server.add_token(GITLAB_TOKEN, username="bot")
        server.add_group("acme")
        server.add_member("group", "acme", "bot", 50)
        yield server


def run_gitlab(gitlab: GitLabTestServer, settings: Settings = FAST) -> tuple[RunOutcome, float]:
    spec = ReconcileSpec.model_validate(
        {
            "integration": "gitlab-members",
            "credentials": {"secretRef": {"name": "gitlab-token"}},
            "gitlabMembers": {
                "url": gitlab.url,
                "groups": [{"path": "acme", "members": [{"username": "alice", "accessLevel": "developer"}]}],
            },
        }
    )
    started = time.monotonic()
    outcome = run_integration(spec, SecretStr(GITLAB_TOKEN), settings, dry_run=False)
    return outcome, time.monotonic() - started


def test_gitlab_retry_after_a_day_gives_the_worker_back_at_once(gitlab: GitLabTestServer) -> None:
    gitlab.rate_limit(1000, retry_after=86400)
    outcome, took = run_gitlab(gitlab)
    assert outcome.error is not None and outcome.error.reason == "RateLimited"
    assert outcome.error.retry_after == 900
    assert len(gitlab.calls) == 1 and took < 5


def test_gitlab_short_retry_after_is_waited_out_in_place(gitlab: GitLabTestServer) -> None:
    gitlab.rate_limit(1, retry_after=1, method="GET")
    outcome, took = run_gitlab(gitlab, FAST.model_copy(update={"run_deadline_seconds": 10}))
    assert outcome.ok, outcome.error
    assert 1 <= took < 8


@EGRESS
def test_gitlab_slow_drip_body_is_cut_at_the_deadline(gitlab: GitLabTestServer, settings: Settings) -> None:
    gitlab.drip_seconds = 0.05
    outcome, took = run_gitlab(gitlab, settings)
    assert outcome.error is not None and outcome.error.reason == "Timeout", outcome.error
    assert 1.4 <= took < 6  # dripped in full, the answers take over a minute


def test_gitlab_endless_pages_stop_at_the_page_cap(gitlab: GitLabTestServer) -> None:
    gitlab.endless_pages = True
    outcome, _ = run_gitlab(gitlab, FAST.model_copy(update={"run_deadline_seconds": 30}))
    assert outcome.error is not None and outcome.error.reason == "BadResponse"
    assert "5 pages" in outcome.error.message
    assert gitlab.calls_matching("GET", "/groups/acme/members") == 5


def test_gitlab_deadline_holds_across_retries_of_a_slow_server(gitlab: GitLabTestServer) -> None:
    gitlab.latency = 1.0
    gitlab.fail(100, 502)
    outcome, took = run_gitlab(gitlab, FAST.model_copy(update={"transient_retries": 10}))
    assert outcome.error is not None and outcome.error.reason == "Timeout", outcome.error
    assert took < 6  # eleven attempts of 1 s each would take over 11 s


def test_one_thread_watches_every_runs_deadline() -> None:
    """Each run's deadline is watched by one shared thread, not a timer thread per run."""
    pairs = [socket.socketpair() for _ in range(6)]
    try:
        with deadline.run_deadline(30) as long_one:
            for a, _ in pairs[:3]:
                long_one.guard(a)
            with deadline.run_deadline(0.2) as short_one:
                for a, _ in pairs[3:]:
                    short_one.guard(a)
                assert sum(t.name == "run-deadlines" for t in threading.enumerate()) == 1
                time.sleep(0.5)
                assert all(a.recv(1) == b"" for a, _ in pairs[3:])  # shut down: reads end at once
            for a, _ in pairs[:3]:
                a.setblocking(False)
                with pytest.raises(BlockingIOError):
                    a.recv(1)  # the long run's sockets are untouched
        assert not deadline.WATCH.watching(long_one) and not deadline.WATCH.watching(short_one)
    finally:
        for a, b in pairs:
            a.close()
            b.close()
