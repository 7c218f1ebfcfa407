"""The shared harness of the API fakes, on a minimal fake of its own and over real HTTP."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from email.message import Message

import httpx
import pytest

from reconciler_testing import harness
from reconciler_testing.gitlab import GitLabTestServer
from reconciler_testing.slack import SlackTestServer


class _EchoHandler(harness.RequestHandler):
    do_GET = harness.RequestHandler.dispatch


class _EchoFake(harness.HTTPFake):
    """Answers `{"path": ...}`, or what `next_response` says; blocks while `gate` is clear."""

    handler_class = _EchoHandler

    def __init__(self) -> None:
        super().__init__()
        self.next_response: harness.Response | None = None
        self.gate = threading.Event()
        self.gate.set()

    def respond(self, method: str, target: str, headers: Message, body: bytes) -> harness.Response:
        self.gate.wait(5)
        if self.next_response is not None:
            return self.next_response
        return harness.Response.json({"path": target})


def test_the_fake_serves_on_a_free_port_and_releases_it() -> None:
    with _EchoFake() as fake:
        port = fake.port
        assert port > 0
        assert httpx.get(f"{fake.origin}/x?y=1").json() == {"path": "/x?y=1"}
    with pytest.raises(RuntimeError, match="not started"):
        _ = fake.port
    with socket.create_server(("127.0.0.1", port)):
        pass  # the port is free again
    fake.stop()  # a second stop is harmless


def test_a_dripped_body_arrives_whole_and_slowly() -> None:
    with _EchoFake() as fake:
        fake.next_response = harness.Response(200, b"0123456789", drip=0.02)
        started = time.monotonic()
        assert httpx.get(fake.origin).content == b"0123456789"
        assert time.monotonic() - started >= 0.15


def test_a_truncated_body_declares_more_than_it_sends() -> None:
    with _EchoFake() as fake:
        fake.next_response = harness.Response(200, b"<html>", truncated=True)
        conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
        conn.request("GET", "/")
        answer = conn.getresponse()
        assert answer.getheader("Content-Length") == "12"
        with pytest.raises(http.client.IncompleteRead):
            answer.read()
        conn.close()


def test_the_in_flight_gauge_sees_concurrent_requests() -> None:
    with _EchoFake() as fake:
        fake.gate.clear()
        threads = [threading.Thread(target=httpx.get, args=(fake.origin,)) for _ in range(3)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while fake.in_flight.snapshot()["inflight"] < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        fake.gate.set()
        for thread in threads:
            thread.join(5)
        stats = fake.in_flight.snapshot()
        assert stats["inflight"] == 0
        assert stats["max_inflight"] == 3
        assert 0 < stats["mean_inflight"] <= 3
        fake.in_flight.reset()
        assert fake.in_flight.snapshot()["max_inflight"] == 0


def test_faults_are_taken_in_order_and_used_up() -> None:
    faults = harness.FaultQueue()
    faults.add(harness.Fault(1, 429, retry_after=3, method="GET", path_prefix="/api/v4/groups"))
    faults.add(harness.Fault(2, 503))
    statuses = [
        fault.status if fault is not None else None
        for fault in (
            faults.take("POST", "/api/v4/groups/1"),  # not GET: the second fault
            faults.take("GET", "/api/v4/users"),  # not under /groups: the second again, used up
            faults.take("GET", "/api/v4/groups/1"),
            faults.take("GET", "/api/v4/groups/1"),
        )
    ]
    assert statuses == [503, 503, 429, None]
    with pytest.raises(ValueError, match=">= 0"):
        faults.add(harness.Fault(-1, 500))


def test_sliding_windows_admit_up_to_the_limit_per_key() -> None:
    windows = harness.SlidingWindows()
    assert [windows.admit("a", 2, 60) for _ in range(3)] == [0, 0, 60]
    assert windows.admit("b", 2, 60) == 0
    windows.clear()
    assert windows.admit("a", 2, 60) == 0
    assert windows.admit("c", 1, 0.05) == 0
    time.sleep(0.06)
    assert windows.admit("c", 1, 0.05) == 0


def test_the_call_log_is_read_as_copies() -> None:
    log: harness.CallLog[int] = harness.CallLog()
    for value in (1, 2, 3):
        log.append(value)
    snapshot = log.snapshot()
    log.clear()
    assert snapshot == [1, 2, 3]
    assert log.count(lambda v: True) == 0


def test_both_fakes_log_the_token_id_and_time_never_the_token() -> None:
    with GitLabTestServer() as gitlab, SlackTestServer() as slack:
        gitlab.add_user("bot")
        gitlab.add_token("gl-secret-one", username="bot")
        gitlab.add_token("gl-secret-two", username="bot")
        httpx.get(f"{gitlab.url}/api/v4/user", headers={"PRIVATE-TOKEN": "gl-secret-two"})
        slack.add_token("xoxb-secret-one")
        httpx.post(f"{slack.api_url}auth.test", headers={"Authorization": "Bearer xoxb-secret-one"})
        (gl_call,) = gitlab.calls
        (slack_call,) = slack.calls
        assert (gl_call.token_id, gl_call.user, gl_call.status) == (2, "bot", 200)
        assert (slack_call.token_id, slack_call.status) == (1, 200)
        assert 0 < gl_call.at <= time.monotonic() and 0 < slack_call.at <= time.monotonic()
        assert "secret" not in repr(gl_call) + repr(slack_call)


def test_the_slack_fake_keeps_connections_alive_counts_them_and_ends_them_when_stopped() -> None:
    with SlackTestServer() as slack:
        conn = http.client.HTTPConnection("127.0.0.1", slack.port, timeout=5)
        for _ in range(2):
            conn.request("POST", "/api/auth.test")
            answer = conn.getresponse()
            assert answer.status == 200 and answer.read() and not answer.will_close
        assert slack.connections == 1
    assert conn.sock is not None and conn.sock.recv(1) == b""  # hung up: serves no kept-alive client
    conn.close()
