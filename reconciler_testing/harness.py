"""What every local API fake shares: serving over HTTP, the call log, fault injection, throttling.

Why: the Slack and GitLab fakes differ only in the API they speak. Starting a threaded server on a
free port, dripping or truncating bodies, counting calls in flight, queueing injected faults and
keeping sliding-window rate limits are written once here, so both fakes (and the benchmarks, which
read the in-flight gauge) behave alike and a fix lands in both.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, cast

__all__ = [
    "CallLog",
    "Fault",
    "FaultQueue",
    "HTTPFake",
    "InFlight",
    "RequestHandler",
    "Response",
    "SlidingWindows",
    "add_server_arguments",
    "serve_until_signalled",
]


@dataclass
class Response:
    """One HTTP answer as a fake wants it written, hostile details included."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    truncated: bool = False
    """Declare a Content-Length longer than `body` and close the connection early."""
    drip: float = 0.0
    """Send the body one byte at a time, this many seconds apart (0: at once)."""

    @classmethod
    def json(
        cls,
        body: object,
        status: int = 200,
        headers: Iterable[tuple[str, str]] = (),
        *,
        compact: bool = True,
        content_type: str = "application/json",
    ) -> Response:
        """A JSON answer; `compact` drops the blanks json.dumps puts after separators."""
        text = json.dumps(body, separators=(",", ":")) if compact else json.dumps(body)
        return cls(status, text.encode(), [("Content-Type", content_type), *headers])


@dataclass
class Fault:
    """An injected answer for the next `remaining` matching requests.

    `method` is the fake's name for a call (an HTTP verb for GitLab, a Web API method for Slack);
    `path_prefix` narrows it by URL path. None matches anything.
    """

    remaining: int
    status: int
    retry_after: int = 0
    method: str | None = None
    path_prefix: str | None = None
    raw: bytes | None = None
    """Answer these bytes as they are (an HTML error page, a cut-off body) instead of the API's error."""
    content_type: str = "text/html; charset=utf-8"
    truncated: bool = False
    """With `raw`: declare a longer Content-Length and close the connection early."""

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method != method:
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)

    def raw_response(self) -> Response:
        """The `raw` bytes as the answer (only for faults made with `raw`)."""
        assert self.raw is not None
        return Response(self.status, self.raw, [("Content-Type", self.content_type)], self.truncated)


class FaultQueue:
    """Injected faults, taken first come first served; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        if fault.remaining < 0 or fault.retry_after < 0:
            raise ValueError("times and retry_after must be >= 0")
        with self._lock:
            self._faults.append(fault)

    def take(self, method: str, path: str) -> Fault | None:
        """The first fault matching this request, with one use consumed; used-up ones are dropped."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    return fault
            self._faults = [f for f in self._faults if f.remaining > 0]
            return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


class SlidingWindows:
    """Rate limits as sliding windows per key (a user, a method): Slack tiers, GitLab throttles."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._admitted: dict[Hashable, collections.deque[float]] = {}

    def admit(self, key: Hashable, limit: int, window: float) -> int:
        """0 when the call is admitted (and counted), else the whole seconds until it would be."""
        now = time.monotonic()
        with self._lock:
            admitted = self._admitted.setdefault(key, collections.deque())
            while admitted and admitted[0] <= now - window:
                admitted.popleft()
            if len(admitted) < limit:
                admitted.append(now)
                return 0
            return max(1, math.ceil(admitted[0] + window - now))

    def clear(self) -> None:
        with self._lock:
            self._admitted.clear()


CallT = TypeVar("CallT")


class CallLog(Generic[CallT]):
    """Every request a fake answered, in arrival order; thread-safe, read as copies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[CallT] = []

    def append(self, call: CallT) -> None:
        with self._lock:
            self._calls.append(call)

    def snapshot(self) -> list[CallT]:
        with self._lock:
            return list(self._calls)

    def select(self, keep: Callable[[CallT], bool]) -> list[CallT]:
        return [call for call in self.snapshot() if keep(call)]

    def count(self, keep: Callable[[CallT], bool]) -> int:
        return len(self.select(keep))

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()


class InFlight:
    """Requests being answered right now, the most at once, and the time-weighted mean since reset.

    Benchmarks read it to see how much concurrency the operator really puts on an API.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = 0
        self.reset()

    def reset(self) -> None:
        """Restart the peak and the mean; requests in flight stay counted."""
        with self._lock:
            self._peak = self._now
            self._area = 0.0  # integral of in-flight requests over time
            self._since = self._last = time.monotonic()

    def _move(self, delta: int) -> None:
        with self._lock:
            now = time.monotonic()
            self._area += self._now * (now - self._last)
            self._last = now
            self._now += delta
            self._peak = max(self._peak, self._now)

    def enter(self) -> None:
        self._move(+1)

    def leave(self) -> None:
        self._move(-1)

    def snapshot(self) -> dict[str, float]:
        self._move(0)
        with self._lock:
            elapsed = max(1e-9, self._last - self._since)
            return {
                "inflight": self._now,
                "max_inflight": self._peak,
                "mean_inflight": self._area / elapsed,
                "seconds": elapsed,
            }


class _ThreadingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver listens with a backlog of 5: many workers connecting at once would overflow it
    # and see 1 s SYN retransmits, a test-server artefact that no client should pay for.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], handler: type[RequestHandler], fake: HTTPFake) -> None:
        super().__init__(address, handler)
        self.fake = fake
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
            self.fake.connections += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def hang_up_all(self) -> None:
        """End every open connection: a stopped fake must not keep serving kept-alive clients."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about clients that hang up (a cut slow drip, a timeout); loud about the rest."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class RequestHandler(BaseHTTPRequestHandler):
    """Hands each request to `HTTPFake.serve` and writes its `Response` (drip and truncation too).

    A fake subclasses it to say which HTTP methods it accepts and how it names itself.
    """

    disable_nagle_algorithm = True  # a drip's bytes go out one by one; avoid 40 ms stalls
    wbufsize = 64 * 1024
    """Headers and body leave in one write (http.server flushes after each request): one send for
    the server and one read for the client instead of two each (drips flush per byte)."""
    requests_seen = 0
    """Requests read on this connection so far (a handler serves one connection)."""

    def setup(self) -> None:
        super().setup()
        idle_timeout = cast(_ThreadingServer, self.server).fake.idle_timeout
        if idle_timeout is not None:  # a read timeout ends handle_one_request with close_connection
            self.connection.settimeout(idle_timeout)

    def log_message(self, format: str, *args: Any) -> None:
        """Tests read the call log instead; stderr noise hides real failures."""

    def dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        fake = cast(_ThreadingServer, self.server).fake
        self.requests_seen += 1
        if self.requests_seen > 1 and fake.take_hang_up():
            self.close_connection = True  # read, never answered
            return
        response = fake.serve(self.command, self.path, self.headers, body)
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        if response.status != 204:
            declared = len(response.body) * 2 if response.truncated else len(response.body)
            self.send_header("Content-Length", str(declared))
        if response.truncated:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD" or response.status == 204 or not response.body:
            return
        if response.drip <= 0:
            self.wfile.write(response.body)
            return
        try:
            for index in range(len(response.body)):  # each byte within any socket timeout, never the whole
                self.wfile.write(response.body[index : index + 1])
                self.wfile.flush()
                time.sleep(response.drip)
        except ConnectionError:
            self.close_connection = True  # the client gave up on the drip, as it should


class HTTPFake:
    """A fake API on a loopback port (0: a free one) served from daemon threads.

    Subclasses implement `respond`; `serve` adds the latency and the in-flight gauge around it.
    """

    handler_class: type[RequestHandler] = RequestHandler
    thread_name = "test-server"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, latency: float = 0.0) -> None:
        self.host = host
        self.latency = latency
        """Seconds slept before answering each request (a distant API)."""
        self.in_flight = InFlight()
        self.connections = 0
        """TCP connections accepted so far: tells a client that keeps them alive from one that does not."""
        self.idle_timeout: float | None = None
        """Close a connection that waits this long for its next request, as servers and load balancers
        do with idle keep-alive connections (None: never; applies to connections accepted after)."""
        self.tls: ssl.SSLContext | None = None
        """Serve HTTPS with this server-side context (set before `start()`); None: plain HTTP."""
        self._hang_ups = 0
        self._hang_ups_lock = threading.Lock()
        self._requested_port = port
        self._httpd: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None

    def respond(self, method: str, target: str, headers: Message, body: bytes) -> Response:
        """Answer one request (`target` is the path with its query); called from handler threads."""
        raise NotImplementedError

    def hang_up_reused(self, times: int) -> None:
        """Hostile: the next `times` requests that arrive on an already used connection are read and
        the connection closed without an answer: a server closing an idle keep-alive connection just
        as the client sends on it."""
        with self._hang_ups_lock:
            self._hang_ups = times

    def take_hang_up(self) -> bool:
        with self._hang_ups_lock:
            if self._hang_ups <= 0:
                return False
            self._hang_ups -= 1
            return True

    def serve(self, method: str, target: str, headers: Message, body: bytes) -> Response:
        self.in_flight.enter()
        try:
            if self.latency > 0:
                time.sleep(self.latency)
            return self.respond(method, target, headers, body)
        finally:
            self.in_flight.leave()

    def start(self) -> Self:
        """Bind and serve from a daemon thread; returns self so `Fake().start()` chains."""
        if self._httpd is not None:
            return self
        self._httpd = _ThreadingServer((self.host, self._requested_port), self.handler_class, self)
        if self.tls is not None:
            self._httpd.socket = self.tls.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        httpd, thread = self._httpd, self._thread
        self._httpd, self._thread = None, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            httpd.hang_up_all()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (only known after `start()` when port 0 was asked for)."""
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._httpd.server_address[1])

    @property
    def origin(self) -> str:
        """``http(s)://host:port``, without a path."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options every fake takes when run standalone (benchmarks, demos)."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--seed-file", help="JSON file with the initial state (see the module doc)")
    parser.add_argument("--drip-seconds", type=float, default=0.0, help="hostile: body byte by byte")
    parser.add_argument("--endless-pages", action="store_true", help="hostile: always a next page")
    parser.add_argument("--retry-after", type=int, default=0, help="hostile: every call 429 with this")


def read_seed(path: str | None) -> dict[str, Any]:
    """The seed file's mapping ({} without a file)."""
    if not path:
        return {}
    with open(path, encoding="utf-8") as fh:
        return cast(dict[str, Any], json.load(fh))


def serve_until_signalled(fake: HTTPFake, first_line: Callable[[], str]) -> int:
    """Serve until SIGINT/SIGTERM; prints `first_line()` (its URL) first so a script can use port 0."""
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    with fake:
        print(first_line(), flush=True)
        while not stop.wait(0.5):
            pass
    return 0
