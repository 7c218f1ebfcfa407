"""One rate budget per account and method, shared through Valkey by every worker and replica.

A sliding-window log per key (a sorted set of grant times, Valkey's own clock): a call is granted
while fewer than `limit` calls were granted in the last `window`, which is exactly what a service
enforcing "N calls per window" accepts. A `Retry-After` from the service blocks the key for
everyone. A worker sleeps at most `max_wait` seconds for budget; a longer wait raises RateLimited
so the run gives its worker back and is retried later. Both are counted (fleet/metrics.py) by the
integration and method the caller names, never by the key (which names the account).
"""

from __future__ import annotations

import logging
import time
import uuid

import valkey
import valkey.exceptions

from reconciler import deadline as run_deadline
from reconciler.errors import CacheUnavailable, RateLimited
from reconciler.fleet import metrics
from reconciler.fleet.riders import Rider, Riders

log = logging.getLogger(__name__)

MAX_BLOCK_SECONDS = 900.0
"""A service's Retry-After longer than this is capped (a hostile server may say a day)."""

_ERRORS = (valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError, OSError)

_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local blocked = redis.call('PTTL', KEYS[2])
if blocked > 0 then return blocked end
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""

_BLOCK = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"""


def window_margin(window: float) -> float:
    """Calls granted a window apart may arrive a little closer at the service; keep a margin
    (2%, and at least 50 ms unless the window itself is tiny)."""
    return max(window * 0.02, min(0.05, window * 0.1))


class RateBudget:
    def __init__(
        self,
        client: valkey.Valkey,
        *,
        max_wait: float,
        prefix: str = "reconciler:budget",
        riders: Riders | None = None,
    ) -> None:
        """`riders`: the run's queued commands, sent in the same round trip as its next token."""
        self._client = client
        self._max_wait = max_wait
        self._prefix = prefix
        self._riders = riders
        self._queued: dict[str, Rider] = {}
        self._answers: dict[str, tuple[object, float]] = {}
        """`queue_token`'s answers by key: the script's reply and when it was received."""
        self._take = client.register_script(_TAKE)
        self._block = client.register_script(_BLOCK)
        self.waited = 0.0
        """Seconds this instance slept for budget (for logs and benchmarks)."""

    def queue_token(self, key: str, limit: int, window: float) -> None:
        """Ask for `key`'s next token in the run's next round trip (its planned save, where the
        task's saves carry its riders); the `acquire` right after it uses that answer."""
        if self._riders is None or not self._riders.carried:
            return  # no save carries it: acquire asks itself
        window_ms = int((window + window_margin(window)) * 1000)
        keys, args = self._take_call(key, limit, window_ms)
        sha = self._take.sha

        def on_reply(replies: list[object]) -> None:
            self._answers[key] = (replies[0], time.monotonic())

        self._queued[key] = self._riders.add(
            f"the budget token of {key}",
            lambda pipe: pipe.evalsha(sha, len(keys), *keys, *args),
            1,
            on_reply,
        )

    def _queued_answer(self, key: str, window: float) -> int | None:
        """The wait (ms) `queue_token` got for `key`, if it is recent: within half the window's
        margin, the same slack a token taken in the trip right before its call has. Else None (a
        token granted but left unused only lowers what the window grants)."""
        rider = self._queued.pop(key, None)
        if rider is not None and self._riders is not None and self._riders.cancel(rider):
            return None  # never sent
        answer = self._answers.pop(key, None)
        if answer is None:
            return None
        reply, at = answer
        if not isinstance(reply, int) or time.monotonic() - at > window_margin(window) / 2:
            return None
        return reply

    def acquire(
        self,
        key: str,
        limit: int,
        window: float,
        what: str,
        *,
        integration: str = metrics.OTHER,
        method: str = metrics.OTHER,
    ) -> None:
        """Take one call from `key`'s budget, sleeping at most `max_wait` in all; else RateLimited.
        `integration` and `method`: the metrics' labels (bounded names, never the account)."""
        window_ms = int((window + window_margin(window)) * 1000)
        deadline = time.monotonic() + self._max_wait
        answer = self._queued_answer(key, window)
        while True:
            wait = (answer if answer is not None else self._try(key, limit, window_ms)) / 1000
            answer = None
            if wait <= 0:
                return
            # Never past the run's own deadline either (RECONCILER_RUN_DEADLINE_SECONDS).
            remaining = min(deadline - time.monotonic(), run_deadline.current().remaining())
            if wait > remaining:
                metrics.budget_deferred(integration, method)
                raise RateLimited(
                    f"{what} is rate limited for this account; the next try is in {wait:.0f}s",
                    retry_after=wait,
                )
            time.sleep(wait)
            self.waited += wait
            metrics.budget_waited(integration, method, wait)

    def block(self, key: str, seconds: float) -> None:
        """The service said Retry-After: nobody on this account calls `key` before it passes."""
        ms = int(min(max(seconds, 0.0), MAX_BLOCK_SECONDS) * 1000)
        if ms <= 0:
            return
        try:
            self._block(keys=[f"{self._prefix}:{key}:blocked"], args=[ms])
        except _ERRORS as exc:
            raise CacheUnavailable(f"Valkey is unreachable (rate budget): {exc}") from None

    def _take_call(self, key: str, limit: int, window_ms: int) -> tuple[list[str], list[str]]:
        """`_TAKE`'s keys and arguments."""
        keys = [f"{self._prefix}:{key}", f"{self._prefix}:{key}:blocked"]
        return keys, [str(limit), str(window_ms), uuid.uuid4().hex]

    def _try(self, key: str, limit: int, window_ms: int) -> int:
        keys, args = self._take_call(key, limit, window_ms)
        try:
            if self._riders is not None:  # the run's queued commands ride along
                return int(self._riders.run_script(self._client, self._take, keys, args))
            return int(self._take(keys=keys, args=args))
        except _ERRORS as exc:
            raise CacheUnavailable(f"Valkey is unreachable (rate budget): {exc}") from None
