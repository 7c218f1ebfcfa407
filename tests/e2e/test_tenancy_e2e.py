"""Tenant safety end to end: the real operator refuses hosts outside RECONCILER_ALLOWED_HOSTS (the
e2e list is just `127.0.0.1`) and unlabelled Secrets before sending anything, and never copies a
service's raw answer into status, Events or the task record."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from reconciler_testing.slack import WRITE_METHODS, SlackTestServer
from tests.e2e.conftest import Process, Sidecar
from tests.e2e.helpers import apply_group, is_stalled
from tests.kube import KubeApi, condition

pytestmark = pytest.mark.e2e

NS = "team-sre"
TOKEN = "xoxb-e2e-tenancy-token-5555555"
LEAK = "db-password=hunter2"


@pytest.fixture(scope="module")
def own_slack(kube: KubeApi) -> Iterator[SlackTestServer]:
    """A Slack of its own, so that its call log counts only this module's requests."""
    with SlackTestServer() as server:
        server.add_token(TOKEN)
        server.add_user("alice@example.com")
        kube.create_secret(NS, "tenancy-bot", {"token": TOKEN})
        kube.create_secret(NS, "unlabelled-bot", {"token": TOKEN}, credentials_label=False)
        yield server


def _texts(kube: KubeApi, name: str, obj: dict[str, Any]) -> str:
    events = [e for e in kube.events(NS) if e.get("involvedObject", {}).get("name") == name]
    return json.dumps(obj.get("status")) + json.dumps(events)


@pytest.mark.parametrize(
    ("api_url", "shown"),
    [
        ("http://localhost:{port}/api/", "localhost:{port} is not in"),
        ("http://169.254.169.254/api/", "169.254.169.254:80 is not in"),
        ("https://slack.com/api/", "slack.com:443 is not in"),
    ],
)
def test_host_outside_the_list_is_stalled_and_nothing_is_sent(
    kube: KubeApi, own_slack: SlackTestServer, operator: Process, api_url: str, shown: str
) -> None:
    before = len(own_slack.calls)
    url = api_url.format(port=own_slack.port)
    name, _ = apply_group(kube, url, NS, "host", ["alice@example.com"], secret="tenancy-bot")
    obj = kube.wait_for(NS, name, is_stalled, 30, "Stalled=True")
    ready = condition(obj, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "HostNotAllowed"
    assert condition(obj, "Stalled")["reason"] == "HostNotAllowed"
    assert shown.format(port=own_slack.port) in ready["message"]
    assert "spec.slackUsergroups.apiUrl" in ready["message"]
    assert len(own_slack.calls) == before


def test_unlabelled_secret_is_not_credentials(
    kube: KubeApi, own_slack: SlackTestServer, operator: Process, sidecar: Sidecar
) -> None:
    before = len(own_slack.calls)
    name, _ = apply_group(
        kube, own_slack.api_url, NS, "unlabelled", ["alice@example.com"], secret="unlabelled-bot"
    )
    obj = kube.wait_for(NS, name, is_stalled, 30, "Stalled=True")
    ready = condition(obj, "Ready")
    assert ready["reason"] == "CredentialsNotAllowed"
    assert f"{NS}/unlabelled-bot" in ready["message"]
    assert "reconciler.dev/credentials" in ready["message"]
    assert len(own_slack.calls) == before
    with sidecar.client() as client:
        record = client.get(f"/reconcile/{obj['status']['taskId']}").json()
    assert record["errors"][0]["reason"] == "CredentialsNotAllowed"
    assert TOKEN not in _texts(kube, name, obj) + json.dumps(record)


class _Html(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.server.methods.append(self.path.rsplit("/", 1)[-1].split("?")[0])  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(f"<html><body>Internal admin {LEAK}</body></html>".encode())

    do_GET = do_POST = _answer

    def log_message(self, *_: Any) -> None:
        pass


def test_html_answer_leaks_into_no_status_event_or_record(
    kube: KubeApi, operator: Process, sidecar: Sidecar
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    server.methods = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/api/"
        name, _ = apply_group(kube, url, NS, "html", ["alice@example.com"], secret="tenancy-bot")
        obj = kube.wait_for(
            NS, name, lambda o: bool((o.get("status") or {}).get("lastRunTime")), 30, "a finished run"
        )
        assert condition(obj, "Ready")["status"] == "False"
        with sidecar.client() as client:
            record = client.get(
                f"/reconcile/{obj['status']['taskId']}", params={"timeout_seconds": 10}
            ).json()
        assert record["status"] == "failed"
        everything = _texts(kube, name, obj) + json.dumps(record)
        assert LEAK not in everything and "<html" not in everything.lower()
        sent: list[str] = server.methods  # type: ignore[attr-defined]
        assert sent and not set(sent) & WRITE_METHODS  # reads only: nothing was written on that answer
    finally:
        server.shutdown()
        server.server_close()
