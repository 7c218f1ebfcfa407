"""CacheBackend on Valkey (the sync `valkey` client), with short timeouts so a dead cache fails fast."""

from __future__ import annotations

import contextlib
import time
from typing import cast

import valkey
import valkey.exceptions

from reconciler.cache.base import CacheBackend, Subscription
from reconciler.errors import CacheUnavailable
from reconciler.settings import Settings

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""

_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) else return 0 end
"""

_ERRORS = (valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError, OSError)


class ValkeyCache(CacheBackend):
    def __init__(self, client: valkey.Valkey, display_url: str = "") -> None:
        self.client = client
        self.display_url = display_url

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 2.0) -> ValkeyCache:
        client = valkey.Valkey.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
            health_check_interval=30,
        )
        return cls(client, _redact(url))

    def _fail(self, exc: Exception) -> CacheUnavailable:
        return CacheUnavailable(f"Valkey at {self.display_url or 'the configured URL'} is unreachable: {exc}")

    def get(self, key: str) -> str | None:
        try:
            return cast(str | None, self.client.get(key))
        except _ERRORS as exc:
            raise self._fail(exc) from None

    def set(self, key: str, value: str, ttl_seconds: int | None = None) -> None:
        try:
            self.client.set(key, value, ex=ttl_seconds)
        except _ERRORS as exc:
            raise self._fail(exc) from None

    def push_recent(self, key: str, value: str, *, keep: int, ttl_seconds: int | None = None) -> None:
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.lrem(key, 0, value)
                pipe.lpush(key, value)
                pipe.ltrim(key, 0, keep - 1)
                if ttl_seconds:
                    pipe.expire(key, ttl_seconds)
                pipe.execute()  # type: ignore[no-untyped-call]
        except _ERRORS as exc:
            raise self._fail(exc) from None

    def recent(self, key: str, limit: int) -> list[str]:
        try:
            return cast(list[str], self.client.lrange(key, 0, limit - 1))
        except _ERRORS as exc:
            raise self._fail(exc) from None

    def acquire_lock(self, name: str, owner: str, ttl_seconds: int) -> bool:
        try:
            return bool(self.client.set(name, owner, nx=True, ex=ttl_seconds))
        except _ERRORS as exc:
            raise self._fail(exc) from None

    def extend_lock(self, name: str, owner: str, ttl_seconds: int) -> bool:
        try:
            return bool(self.client.eval(_EXTEND, 1, name, owner, str(ttl_seconds)))
        except _ERRORS as exc:
            raise self._fail(exc) from None

    def release_lock(self, name: str, owner: str) -> None:
        try:
            self.client.eval(_RELEASE, 1, name, owner)
        except _ERRORS as exc:
            raise self._fail(exc) from None

    def publish(self, channel: str, message: str) -> None:
        try:
            self.client.publish(channel, message)
        except _ERRORS as exc:
            raise self._fail(exc) from None

    def subscribe(self, channel: str) -> Subscription:
        try:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            pubsub.subscribe(channel)
        except _ERRORS as exc:
            raise self._fail(exc) from None
        return _ValkeySubscription(self, pubsub)

    def incr(self, key: str, field: str, amount: int = 1) -> None:
        try:
            self.client.hincrby(key, field, amount)
        except _ERRORS as exc:
            raise self._fail(exc) from None

    def counters(self, key: str) -> dict[str, int]:
        try:
            raw = cast(dict[str, str], self.client.hgetall(key))
        except _ERRORS as exc:
            raise self._fail(exc) from None
        return {name: int(value) for name, value in raw.items() if value.lstrip("-").isdigit()}

    def ping(self) -> None:
        try:
            self.client.ping()
        except _ERRORS as exc:
            raise self._fail(exc) from None


class _ValkeySubscription(Subscription):
    def __init__(self, cache: ValkeyCache, pubsub: valkey.client.PubSub) -> None:
        self.cache = cache
        self.pubsub = pubsub

    def get(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                message = self.pubsub.get_message(timeout=remaining)
            except _ERRORS as exc:
                raise self.cache._fail(exc) from None
            if message is not None and message.get("type") == "message":
                return str(message["data"])
        return None

    def close(self) -> None:
        with contextlib.suppress(*_ERRORS):
            self.pubsub.close()


def _redact(url: str) -> str:
    """Drop a password from a Valkey URL before it can reach a log or an error message."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def connect_cache(settings: Settings) -> ValkeyCache:
    """The configured Valkey, or the shared embedded one when RECONCILER_VALKEY_URL is unset."""
    url = settings.valkey_url
    if url is None:
        from reconciler.cache.embedded import ensure_embedded_valkey

        url = ensure_embedded_valkey(settings.runtime_dir)
    return ValkeyCache.from_url(url, timeout=settings.cache_timeout_seconds)
