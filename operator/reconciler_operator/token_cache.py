"""A Secret read once serves the runs of the next few seconds (RECONCILER_SECRET_CACHE_SECONDS).

Every run needs its token, and a fleet of Reconciles in one namespace usually names one Secret: read
per run, that GET was the largest part of a run's time outside Slack in P5 (500 Reconciles at once).
Only successful reads are kept, per namespace, Secret and key (a Reconcile reads Secrets of its own
namespace only, so nothing crosses namespaces); a missing, unlabelled or unreadable Secret is asked
again by the next run. A rotated token, or a Secret whose credentials label is removed, takes effect
for runs that start at most that many seconds later (0 turns the cache off).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pydantic import SecretStr

from reconciler.credentials import TokenSource
from reconciler.models.spec import SecretRef


class CachedTokens:
    def __init__(
        self, source: TokenSource, ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.source, self.ttl, self._clock = source, ttl_seconds, clock
        self._tokens: dict[tuple[str, str, str], tuple[float, SecretStr]] = {}
        self._lock = threading.Lock()

    def read_token(self, namespace: str, ref: SecretRef) -> SecretStr:
        if self.ttl <= 0:
            return self.source.read_token(namespace, ref)
        key = (namespace, ref.name, ref.key)
        now = self._clock()
        with self._lock:
            kept = self._tokens.get(key)
            if kept is not None and now - kept[0] < self.ttl:
                return kept[1]
        token = self.source.read_token(namespace, ref)  # errors are raised, and never kept
        with self._lock:
            self._tokens = {k: v for k, v in self._tokens.items() if now - v[0] < self.ttl}  # bounded
            self._tokens[key] = (now, token)
        return token
