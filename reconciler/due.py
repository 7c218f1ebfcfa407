"""One daemon thread that calls `fire()` on each watched item once its monotonic `due` time passes.

Run deadlines and run-lock leases both need "do this at that time" for every run in the process.
A timer thread per run cost a thread start and join per run, each waiting for a GIL hand-off while
the operator's event loop was busy (P5); one watcher per purpose wakes only for the earliest item.
"""

from __future__ import annotations

import threading
import time
from typing import Generic, Protocol, TypeVar


class Due(Protocol):
    @property
    def due(self) -> float:
        """When to fire (`time.monotonic()` seconds)."""

    def fire(self) -> None:
        """Called once, from the watcher's thread, when `due` has passed (the item is unwatched
        first: to fire again, it sets a later `due` and is added again)."""


T = TypeVar("T", bound=Due)


class DueWatch(Generic[T]):
    def __init__(self, thread_name: str) -> None:
        self._items: set[T] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._name = thread_name

    def add(self, item: T) -> None:
        with self._changed:
            self._items.add(item)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._changed.notify()

    def discard(self, item: T) -> None:
        with self._changed:
            self._items.discard(item)

    def watching(self, item: T) -> bool:
        with self._changed:
            return item in self._items

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                passed = [item for item in self._items if item.due <= now]
                self._items.difference_update(passed)
                if not passed:
                    earliest = min((item.due for item in self._items), default=now + 60)
                    self._changed.wait(max(0.005, earliest - now))
                    continue
            for item in passed:  # outside the condition: a slow fire must not block add/discard
                item.fire()
