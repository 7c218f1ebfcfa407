"""The overall deadline of one run (`RECONCILER_RUN_DEADLINE_SECONDS`), across retries, slow answers
and paging.

A run sets its deadline for the thread it runs in (`run_deadline`); the HTTP clients read it with
`current()` before every request: the request's timeout becomes min(call timeout, time left), and
each socket a request reads from is `guard`ed. Per-read socket timeouts cannot stop a server that
sends one byte every second; the guard can: when the deadline passes, a timer shuts down every
socket still registered, which ends the blocked read at once, and the client reports `Timeout`.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import socket
import threading
import time
import weakref
from collections.abc import Iterator

from reconciler.due import DueWatch
from reconciler.errors import Timeout

log = logging.getLogger(__name__)


class Deadline:
    """When a run must end; `seconds=inf` never ends (code running outside any run)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends_at = time.monotonic() + seconds
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._watched = False
        self._cut = False

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.seconds)

    def remaining(self) -> float:
        return max(0.0, self.ends_at - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.bounded and time.monotonic() >= self.ends_at

    def error(self, what: str) -> Timeout:
        return Timeout(
            f"the run passed its deadline of {self.seconds:.0f}s (RECONCILER_RUN_DEADLINE_SECONDS) while "
            f"{what}; what it applied so far stays, the next run re-plans from the service's state"
        )

    def check(self, what: str) -> None:
        """Raise Timeout if the deadline has passed: call it before starting more work."""
        if self.expired:
            raise self.error(what)

    def timeout(self, call_timeout: float, what: str) -> float:
        """The timeout for one request: the call's own, but never past the deadline."""
        self.check(what)
        return min(call_timeout, self.remaining()) if self.bounded else call_timeout

    def guard(self, sock: socket.socket | None) -> None:
        """Shut `sock` down when the deadline passes (at once if it already has)."""
        if sock is None or not self.bounded:
            return
        with self._lock:
            if not self._cut:
                self._sockets.add(sock)
                if not self._watched:
                    self._watched = True
                    WATCH.add(self)
                return
        _shutdown(sock)

    def release(self, sock: socket.socket | None) -> None:
        """Stop guarding `sock`: a kept-alive connection goes back to a pool another run may take it
        from, and this run's deadline must not cut it there."""
        if sock is None or not self.bounded:
            return
        with self._lock:
            self._sockets.discard(sock)

    def close(self) -> None:
        """The run is over: stop the timer (sockets stay as they are)."""
        with self._lock:
            watched, self._watched = self._watched, False
            self._sockets = weakref.WeakSet()
        if watched:
            WATCH.discard(self)

    @property
    def due(self) -> float:
        return self.ends_at

    def fire(self) -> None:
        """The deadline passed (DueWatch): shut every guarded socket down."""
        self._cut_all()

    def _cut_all(self) -> None:
        with self._lock:
            self._cut = True
            sockets, self._sockets = list(self._sockets), weakref.WeakSet()
        if sockets:
            log.info(
                "run deadline of %.0fs passed: cutting %d open connection(s)", self.seconds, len(sockets)
            )
        for sock in sockets:
            _shutdown(sock)


WATCH: DueWatch[Deadline] = DueWatch("run-deadlines")
"""Cuts the sockets of every run whose deadline passes."""


def _shutdown(sock: socket.socket) -> None:
    # shutdown (not close) wakes a read blocked in another thread; the owner still closes the socket.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


UNBOUNDED = Deadline(math.inf)
_CURRENT: contextvars.ContextVar[Deadline] = contextvars.ContextVar(
    "reconciler_run_deadline", default=UNBOUNDED
)


def current() -> Deadline:
    """The deadline of the run this thread is executing (unbounded outside a run)."""
    return _CURRENT.get()


@contextlib.contextmanager
def run_deadline(seconds: float) -> Iterator[Deadline]:
    """Bound everything the current thread does inside the block to `seconds`."""
    deadline = Deadline(seconds)
    token = _CURRENT.set(deadline)
    try:
        yield deadline
    finally:
        _CURRENT.reset(token)
        deadline.close()
