"""A short process-local copy of values the fleet keeps in Valkey that never change for their key
(a token's workspace): each run of a process then skips that round trip. Keyed by the Valkey client
too, so another Valkey (another fleet, a test's fresh server) never sees this one's values."""

from __future__ import annotations

import threading
import time
import weakref

import valkey


class LocalMemo:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._values: weakref.WeakKeyDictionary[valkey.Valkey, dict[str, tuple[str, float]]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def get(self, client: valkey.Valkey, key: str) -> str | None:
        with self._lock:
            value, until = self._values.get(client, {}).get(key, ("", 0.0))
        return value if value and time.monotonic() < until else None

    def put(self, client: valkey.Valkey, key: str, value: str) -> None:
        with self._lock:
            values = self._values.setdefault(client, {})
            now = time.monotonic()
            for old in [k for k, (_, until) in values.items() if until <= now]:  # stays small
                del values[old]
            values[key] = (value, now + self.seconds)
