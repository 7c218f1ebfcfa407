"""Tenant safety: the allow-list (after DNS, and again at connect time), Secret labels, no raw bodies.

The real clients run against the real test servers; a resolver hook stands in for DNS so that names
can resolve to 127.0.0.1 or 169.254.169.254 offline. The servers' call logs show what was sent.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from reconciler.errors import ReconcileError
from reconciler.integrations.gitlab_members.client import GitlabClient
from reconciler.integrations.slack_usergroups.client import SlackClient
from reconciler.models.spec import ReconcileSpec
from reconciler.runner import check_hosts, run_integration
from reconciler.settings import Settings
from reconciler.tenancy import (
    CredentialsNotAllowed,
    HostNotAllowed,
    HostPolicy,
    HostRule,
    check_credentials_label,
    parse_allowed_hosts,
    parse_rule,
)
from reconciler_testing.gitlab import GitLabTestServer
from reconciler_testing.slack import SlackTestServer

TOKEN = "xoxb-tenancy-secret-token-123"
SETTINGS = Settings(http_timeout_seconds=5, transient_retries=0, rate_limit_retries=0)


class FakeDns:
    """A resolver hook: name -> addresses, answered in turn (a rebinding name changes its answer)."""

    def __init__(self, **names: Sequence[str]) -> None:
        self.names = {name.replace("_", "."): list(addresses) for name, addresses in names.items()}
        self.asked: list[str] = []

    def __call__(self, host: str, port: int, family: int = 0, type: int = 0) -> list[tuple[Any, ...]]:
        self.asked.append(host)
        answers = self.names.get(host)
        if answers is None:
            try:
                return socket.getaddrinfo(host, port, family, type)  # IP literals
            except OSError:
                raise socket.gaierror(f"unknown name {host}") from None
        address = answers.pop(0) if len(answers) > 1 else answers[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]


# --- the rules --------------------------------------------------------------------------------------


def test_rules_parse_hosts_ports_wildcards_and_addresses() -> None:
    assert parse_allowed_hosts("slack.com, *.Example.com:8443,10.0.0.5,[fd00::1]:443,") == (
        HostRule("slack.com"),
        HostRule("example.com", 8443, wildcard=True),
        HostRule("10.0.0.5"),
        HostRule("fd00::1", 443),
    )
    for bad in ("*", "a.*.com", "host:0", "host:http", "a b", "[::1]x"):
        with pytest.raises(ValueError, match=r"host|port|IPv6"):
            parse_rule(bad)


def test_settings_refuse_a_bad_allowed_hosts_entry() -> None:
    with pytest.raises(ValueError, match="port must be a number"):
        Settings(allowed_hosts="slack.com,gitlab.example.com:99999")


def test_default_allows_slack_and_gitlab_com_only() -> None:
    policy = HostPolicy.parse(
        Settings().allowed_hosts, FakeDns(slack_com=["3.3.3.3"], gitlab_com=["4.4.4.4"])
    )
    policy.check_url("https://slack.com/api/", "spec.slackUsergroups.apiUrl")
    policy.check_url("https://gitlab.com", "spec.gitlabMembers.url")
    with pytest.raises(HostNotAllowed, match=r"spec.gitlabMembers.url: gitlab.example.com:443 is not in"):
        policy.check_url("https://gitlab.example.com", "spec.gitlabMembers.url")


@pytest.mark.parametrize("address", ["127.0.0.1", "169.254.169.254", "10.1.2.3", "100.64.0.1", "::1"])
def test_a_wildcard_name_resolving_to_an_internal_address_is_refused(address: str) -> None:
    dns = FakeDns(evil_example_com=[address])
    policy = HostPolicy.parse("*.example.com", dns)
    with pytest.raises(HostNotAllowed, match=f"resolves to the internal address {address}"):
        policy.check_url("https://evil.example.com/api/", "spec.slackUsergroups.apiUrl")


def test_internal_addresses_pass_only_when_listed_explicitly() -> None:
    dns = FakeDns(gitlab_corp_example=["10.0.0.7"], other_corp_example=["10.0.0.8"])
    HostPolicy.parse("gitlab.corp.example", dns).check_url("https://gitlab.corp.example", "url")
    HostPolicy.parse("*.corp.example,10.0.0.8", dns).check_url("https://other.corp.example", "url")
    with pytest.raises(HostNotAllowed, match=r"169.254.169.254:80 is not in"):
        HostPolicy.parse("*.corp.example", dns).check_url("http://169.254.169.254/latest/", "url")


def test_ports_and_schemes() -> None:
    policy = HostPolicy.parse("gitlab.example.com:8443", FakeDns(gitlab_example_com=["5.5.5.5"]))
    policy.check_url("https://gitlab.example.com:8443", "url")
    with pytest.raises(HostNotAllowed, match=r"gitlab.example.com:443 is not in"):
        policy.check_url("https://gitlab.example.com", "url")
    with pytest.raises(HostNotAllowed, match="not an http"):
        policy.check_url("file:///etc/passwd", "url")


def test_only_labelled_secrets_are_credentials() -> None:
    check_credentials_label({"reconciler.dev/credentials": "true"}, "Secret a/b")
    for labels in (None, {}, {"reconciler.dev/credentials": "yes"}):
        with pytest.raises(CredentialsNotAllowed, match="kubectl label secret"):
            check_credentials_label(labels, "Secret a/b")


# --- through the real clients -------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[SlackTestServer]:
    with SlackTestServer() as server:
        server.add_token(TOKEN)
        yield server


def test_slack_name_resolving_to_loopback_sends_nothing(slack: SlackTestServer) -> None:
    port = slack.port
    dns = FakeDns(slack_evil_test=["127.0.0.1"])
    client = SlackClient(
        SecretStr(TOKEN),
        f"http://slack.evil.test:{port}/api/",
        SETTINGS,
        policy=HostPolicy.parse("*.test", dns),
    )
    with pytest.raises(HostNotAllowed, match=r"internal address 127.0.0.1"):
        client.list_users()
    assert slack.calls == []


def test_a_rebinding_name_is_caught_at_connect_time(slack: SlackTestServer) -> None:
    """Public at check time, loopback when the client connects: refused, nothing sent."""
    dns = FakeDns(rebind_example_com=["93.184.216.34", "127.0.0.1"])
    policy = HostPolicy.parse("*.example.com", dns)
    url = f"http://rebind.example.com:{slack.port}/api/"
    policy.check_url(url, "spec.slackUsergroups.apiUrl")
    with pytest.raises(HostNotAllowed, match=r"127.0.0.1"):
        SlackClient(SecretStr(TOKEN), url, SETTINGS, policy=policy).list_users()
    assert slack.calls == []


def test_the_connection_uses_the_checked_address(slack: SlackTestServer) -> None:
    """A name only the policy's resolver knows still reaches the server: the client connects to the
    address the policy resolved and checked, not to whatever a second lookup would say."""
    slack.add_user("alice@example.com")
    dns = FakeDns(slack_internal_test=["127.0.0.1"])
    policy = HostPolicy.parse("slack.internal.test", dns)
    client = SlackClient(
        SecretStr(TOKEN), f"http://slack.internal.test:{slack.port}/api/", SETTINGS, policy=policy
    )
    assert [u.email for u in client.list_users()] == ["alice@example.com"]
    assert "slack.internal.test" in dns.asked


def test_gitlab_name_resolving_to_metadata_address_sends_nothing() -> None:
    with GitLabTestServer() as gitlab:
        gitlab.add_user("bot")
        gitlab.add_token(TOKEN, username="bot")
        dns = FakeDns(gitlab_evil_test=["169.254.169.254"], gitlab_ok_test=["127.0.0.1"])
        policy = HostPolicy.parse("*.evil.test,gitlab.ok.test", dns)
        evil = GitlabClient(
            f"http://gitlab.evil.test:{gitlab.port}", SecretStr(TOKEN), SETTINGS, policy=policy
        )
        with pytest.raises(HostNotAllowed, match=r"169.254.169.254"):
            evil.current_user()
        assert gitlab.calls == []
        ok = GitlabClient(f"http://gitlab.ok.test:{gitlab.port}", SecretStr(TOKEN), SETTINGS, policy=policy)
        assert ok.current_user().username == "bot"
        assert len(gitlab.calls) == 1


def test_enforced_settings_stop_a_run_before_any_request(slack: SlackTestServer) -> None:
    spec = ReconcileSpec.model_validate(
        {
            "integration": "slack-usergroups",
            "credentials": {"secretRef": {"name": "s"}},
            "slackUsergroups": {"apiUrl": slack.api_url, "usergroups": [{"handle": "h", "name": "H"}]},
        }
    )
    enforced = Settings(allowed_hosts="slack.com", enforce_allowed_hosts=True)
    with pytest.raises(HostNotAllowed, match=r"spec.slackUsergroups.apiUrl: 127.0.0.1:\d+ is not in"):
        check_hosts(spec, enforced)
    outcome = run_integration(spec, SecretStr(TOKEN), enforced, dry_run=True)
    assert isinstance(outcome.error, ReconcileError) and outcome.error.reason == "HostNotAllowed"
    assert slack.calls == []
    check_hosts(spec, Settings(allowed_hosts="slack.com"))  # plan/apply: not enforced by default


# --- answers that are not the service's own -----------------------------------------------------

HTML = "<html><body><h1>Internal admin</h1>db-password=hunter2 " + "x" * 600 + "</body></html>"


class _HtmlHandler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        status = int(self.path.rsplit("status=", 1)[-1][:3]) if "status=" in self.path else 200
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(HTML.encode())

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def html_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlHandler)
    server.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status", [200, 400, 403, 404])
def test_html_answers_never_reach_a_message(html_server: str, status: int) -> None:
    errors: list[ReconcileError] = []
    for call in (
        lambda: SlackClient(SecretStr(TOKEN), f"{html_server}/status={status}/api/", SETTINGS).list_users(),
        lambda: GitlabClient(f"{html_server}/status={status}", SecretStr(TOKEN), SETTINGS).current_user(),
    ):
        with pytest.raises(ReconcileError) as caught:
            call()
        errors.append(caught.value)
    for error in errors:
        assert "html" not in error.message.lower() and "hunter2" not in error.message
        assert len(error.message) < 300
