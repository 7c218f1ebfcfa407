"""Kept-alive Slack connections (integrations/keepalive.py): the real SlackClient, through the host
allow-list as the operator connects, against the Slack test server, which counts the connections it
accepts and can close idle ones or hang up on a reused one.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from pydantic import SecretStr

from reconciler import deadline
from reconciler.errors import RateLimited, Timeout
from reconciler.integrations.egress import guarded_opener
from reconciler.integrations.slack_usergroups.client import SlackClient
from reconciler.settings import Settings
from reconciler.tenancy import HostNotAllowed, HostPolicy
from reconciler_testing.slack import SlackTestServer

TOKEN = "xoxb-keepalive-secret-token-1"
SETTINGS = Settings(
    http_timeout_seconds=30,  # only the deadline may end the slow answers here
    transient_retries=3,  # slack-sdk counts the attempts of all its retry handlers together
    rate_limit_retries=2,
    rate_limit_inline_wait_seconds=2,
    retry_after_max_seconds=900,
)
NAME = "slack.keepalive.test"


class Dns:
    """A resolver hook that counts lookups (one per new connection) and can change its answer."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.address = address
        self.asked = 0

    def __call__(self, host: str, port: int, family: int = 0, type: int = 0) -> list[tuple[Any, ...]]:
        self.asked += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (self.address, port))]


@pytest.fixture
def slack() -> Iterator[SlackTestServer]:
    with SlackTestServer() as server:
        server.add_token(TOKEN)
        server.add_user("alice@example.com")
        yield server


def client(
    slack: SlackTestServer, policy: HostPolicy, name: str = NAME, settings: Settings = SETTINGS
) -> SlackClient:
    return SlackClient(SecretStr(TOKEN), f"http://{name}:{slack.port}/api/", settings, policy=policy)


def emails(client: SlackClient) -> list[str]:
    return [user.email for user in client.list_users()]


def test_consecutive_calls_and_clients_under_one_allow_list_share_a_connection(
    slack: SlackTestServer,
) -> None:
    dns = Dns()
    for _ in range(3):  # a client per run, as the operator makes them: each with an equal policy
        slack_client = client(slack, HostPolicy.parse(NAME, dns))
        assert emails(slack_client) == ["alice@example.com"]
        assert slack_client.team_id()
    assert len(slack.calls) == 6
    assert slack.connections == 1 and dns.asked == 1


def test_worker_threads_share_the_pool_safely(slack: SlackTestServer) -> None:
    policy = HostPolicy.parse("127.0.0.1")
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                results.append(emails(client(slack, policy, "127.0.0.1")))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and results == [["alice@example.com"]] * 80
    assert slack.connections <= 8  # at most one per thread in flight, then reused


def test_a_server_closing_idle_connections_fails_no_call(slack: SlackTestServer) -> None:
    slack.idle_timeout = 0.2
    slack_client = client(slack, HostPolicy.parse("127.0.0.1"), "127.0.0.1")
    assert emails(slack_client) == ["alice@example.com"]
    time.sleep(0.5)  # the server closed it meanwhile
    assert emails(slack_client) == ["alice@example.com"]
    assert slack.connections == 2 and len(slack.calls) == 2


def test_a_hang_up_on_a_reused_connection_is_sent_once_more_on_a_fresh_one(slack: SlackTestServer) -> None:
    """The server closes the idle connection just as the request arrives: read, never answered.
    Not slack-sdk's retry of connection errors (off here): the pool's, on a fresh connection."""
    no_retries = SETTINGS.model_copy(update={"transient_retries": 0})
    slack_client = client(slack, HostPolicy.parse("127.0.0.1"), "127.0.0.1", no_retries)
    slack_client.create_usergroup("team-a", "Team A", "", ())
    slack.hang_up_reused(1)
    slack_client.create_usergroup("team-b", "Team B", "", ())
    assert slack.connections == 2
    assert [c.method for c in slack.write_calls()] == ["usergroups.create"] * 2  # each sent once


def test_every_new_connection_is_checked_and_none_crosses_allow_lists(slack: SlackTestServer) -> None:
    dns = Dns()
    listed = HostPolicy.parse("*.keepalive.test,127.0.0.1", dns)  # loopback only as listed
    assert emails(client(slack, listed)) == ["alice@example.com"]
    # The same host under the wildcard alone: its loopback address is refused, though a connection
    # to it, checked under the other list, is idle in the pool.
    with pytest.raises(HostNotAllowed, match=r"internal address 127\.0\.0\.1"):
        client(slack, HostPolicy.parse("*.keepalive.test", dns)).list_users()
    # The same rules with another resolver are another policy too: a connection of its own.
    other = HostPolicy.parse("*.keepalive.test,127.0.0.1", Dns())
    assert emails(client(slack, other)) == ["alice@example.com"]
    assert slack.connections == 2 and len(slack.calls) == 2 and dns.asked == 2
    # The name now resolves elsewhere; the server hangs up on the reused connection, and the fresh
    # one the request is sent on again is checked: refused, nothing more reaches the server.
    dns.address = "10.1.2.3"
    slack.hang_up_reused(1)
    with pytest.raises(HostNotAllowed, match=r"internal address 10\.1\.2\.3"):
        client(slack, listed).list_users()
    assert len(slack.calls) == 2 and dns.asked == 3


def test_the_deadline_cuts_a_slow_drip_on_a_reused_connection(slack: SlackTestServer) -> None:
    slack_client = client(slack, HostPolicy.parse("127.0.0.1"), "127.0.0.1")
    assert emails(slack_client) == ["alice@example.com"]
    slack.drip_seconds = 0.05  # the answer takes over ten seconds, each byte well within any timeout
    started = time.monotonic()
    with pytest.raises(Timeout), deadline.run_deadline(1.0):
        slack_client.list_users()
    assert time.monotonic() - started < 4
    assert slack.connections == 1  # the drip came on the reused connection


def test_a_returned_connection_is_not_cut_by_the_deadline_of_the_run_that_used_it(
    slack: SlackTestServer,
) -> None:
    """Run A returns its connection to the pool, run B reads a slow answer on it: A's deadline
    passing meanwhile must not cut B's read."""
    slack_client = client(slack, HostPolicy.parse("127.0.0.1"), "127.0.0.1")
    with deadline.run_deadline(0.5):
        assert emails(slack_client) == ["alice@example.com"]
        slack.drip_seconds = 0.004  # a few hundred bytes: about a second, past A's deadline
        with deadline.run_deadline(10):
            started = time.monotonic()
            assert emails(slack_client) == ["alice@example.com"]
            assert time.monotonic() - started > 0.6
    assert slack.connections == 1


def test_rate_limits_and_server_errors_keep_the_connection(slack: SlackTestServer) -> None:
    slack_client = client(slack, HostPolicy.parse("127.0.0.1"), "127.0.0.1")
    slack.rate_limit("users.list", 1, retry_after=1)
    slack.fail("users.list", 1, status=502)
    started = time.monotonic()
    assert emails(slack_client) == ["alice@example.com"]
    assert time.monotonic() - started >= 1  # Retry-After waited out in place
    slack.rate_limit("users.list", 1, retry_after=86400)
    with pytest.raises(RateLimited) as caught:
        slack_client.list_users()
    assert caught.value.retry_after == 900
    assert [c.status for c in slack.calls] == [429, 502, 200, 429]
    assert slack.connections == 1


def test_https_connections_are_kept_per_tls_context() -> None:
    """Through egress's opener itself: one TLS handshake for many requests, and a connection made
    with one TLS context (what certificates it trusts) is never used by an opener with another."""
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    https = SlackTestServer()
    https.tls = server_tls
    with https:
        url = f"{https.api_url}auth.test"
        policy = HostPolicy.parse("127.0.0.1")
        trusting = ssl.create_default_context()
        ca.configure_trust(trusting)
        for opener in (guarded_opener(policy, trusting), guarded_opener(policy, trusting)):
            with opener.open(url, timeout=5) as answer:
                assert answer.status == 200 and json.loads(answer.read())["error"] == "not_authed"
            with opener.open(url) as answer:  # urllib's default timeout, on a reused connection
                assert answer.status == 200 and json.loads(answer.read())["error"] == "not_authed"
        assert https.connections == 1
        other = ssl.create_default_context()
        ca.configure_trust(other)
        with guarded_opener(policy, other).open(url, timeout=5) as answer:
            assert answer.status == 200
        assert https.connections == 2


def test_without_an_allow_list_connections_are_kept_too_but_not_through_a_proxy(
    slack: SlackTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reconciler plan/apply` (no allow-list enforced): kept alive under keys of their own; a
    request the environment's proxy carries is sent as urllib sends it (the fake is the proxy)."""
    direct = SlackClient(SecretStr(TOKEN), slack.api_url, SETTINGS)
    assert emails(direct) == ["alice@example.com"] and emails(direct) == ["alice@example.com"]
    assert slack.connections == 1
    monkeypatch.setenv("http_proxy", slack.origin)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    proxied = SlackClient(SecretStr(TOKEN), "http://slack.proxied.test/api/", SETTINGS)
    assert emails(proxied) == ["alice@example.com"] and emails(proxied) == ["alice@example.com"]
    assert slack.connections == 3 and len(slack.calls) == 4
