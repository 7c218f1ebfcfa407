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

    def close(self) -> None:
        """The run is over: stop the timer (sockets stay as they are)."""
        with self._lock:
            watched, self._watched = self._watched, False
            self._sockets = weakref.WeakSet()
        if watched:
            WATCH.discard(self)

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


class DeadlineWatch:
    """One thread cuts the sockets of every run whose deadline passes (a timer thread per run cost a
    GIL hand-off to start while the operator's event loop was busy)."""

    def __init__(self) -> None:
        self._deadlines: set[Deadline] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline) -> None:
        with self._changed:
            self._deadlines.add(deadline)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="run-deadlines", daemon=True)
                self._thread.start()
            self._changed.notify()

    def discard(self, deadline: Deadline) -> None:
        with self._changed:
            self._deadlines.discard(deadline)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                passed = [d for d in self._deadlines if d.ends_at <= now]
                self._deadlines.difference_update(passed)
                if not passed:
                    earliest = min((d.ends_at for d in self._deadlines), default=now + 60)
                    self._changed.wait(max(0.005, earliest - now))
                    continue
            for deadline in passed:
                deadline._cut_all()


WATCH = DeadlineWatch()


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
