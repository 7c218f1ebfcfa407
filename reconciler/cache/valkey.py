"""CacheBackend on Valkey (the sync `valkey` client), with short timeouts so a dead cache fails fast."""

from __future__ import annotations

import contextlib
import time
from typing import Any, cast

import valkey
import valkey.exceptions

from reconciler.cache.base import CacheBackend, HistoryWrite, RunStart, Subscription
from reconciler.errors import CacheUnavailable
from reconciler.fleet.riders import Riders
from reconciler.settings import Settings

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""

_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) else return 0 end
"""

_SAVE_BODY = """
redis.call('set', KEYS[1], ARGV[1], 'ex', ARGV[2])
if ARGV[5] == '1' then
  redis.call('lrem', KEYS[2], 0, ARGV[3])
  redis.call('lpush', KEYS[2], ARGV[3])
  local keep = tonumber(ARGV[4])
  local dropped = redis.call('lrange', KEYS[2], keep, -1)
  if #dropped > 0 then
    local spare = redis.call('get', KEYS[3])
    redis.call('ltrim', KEYS[2], 0, keep - 1)
    for _, id in ipairs(dropped) do
      if id == spare then redis.call('rpush', KEYS[2], id) else redis.call('del', ARGV[6] .. id) end
    end
  end
  redis.call('expire', KEYS[2], ARGV[2])
end
if ARGV[7] == '1' then redis.call('set', KEYS[3], ARGV[3], 'ex', ARGV[2]) end
if ARGV[8] ~= '' then redis.call('publish', ARGV[8], ARGV[3]) end
if ARGV[9] ~= '' then redis.call('hincrby', KEYS[4], ARGV[9], 1) end
if ARGV[10] ~= '' and redis.call('get', KEYS[5]) == ARGV[10] then redis.call('del', KEYS[5]) end
"""
"""KEYS: record, history, spare (last failed), counter hash, lock to release. ARGV: record JSON, ttl,
id, keep, push?, evict prefix, mark spare?, channel, counter field, lock owner (see HistoryWrite)."""

_SAVE_RECORD = _SAVE_BODY + "return 1"

# KEYS[6]: the run lock; ARGV[11], ARGV[12]: its owner and TTL. Nothing is written unless it is taken.
# The previous run is the history's head, or the one after it when the head is this task (pending).
_START_RECORD = (
    """
if not redis.call('set', KEYS[6], ARGV[11], 'nx', 'ex', ARGV[12]) then return false end
local ids = redis.call('lrange', KEYS[2], 0, 1)
local head = ids[1]
if head == ARGV[3] then head = ids[2] end
local previous = false
if head then previous = redis.call('get', ARGV[6] .. head) end
"""
    + _SAVE_BODY
    + "return {head or '', previous or ''}"
)

TLS_SCHEMES = ("rediss://", "valkeys://")
_ERRORS = (valkey.exceptions.ValkeyError, OSError)
"""Every failure is CacheUnavailable: not only a lost connection but also a full (OOM), read-only,
loading or slow server, so that a finished record always goes to the outbox instead of being lost."""
_UNREACHABLE = (valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError, OSError)


class ValkeyCache(CacheBackend):
    def __init__(self, client: valkey.Valkey, display_url: str = "") -> None:
        self.client = client
        self.display_url = display_url
        self._save_record = client.register_script(_SAVE_RECORD)
        self._start_record = client.register_script(_START_RECORD)

    @classmethod
    def from_url(
        cls, url: str, *, timeout: float = 2.0, password: str | None = None, ca_file: str | None = None
    ) -> ValkeyCache:
        """`password` unless the URL has one; `ca_file` verifies a TLS (rediss://, valkeys://) server."""
        tls: dict[str, Any] = {}
        if ca_file is not None:
            if not url.startswith(TLS_SCHEMES):
                raise CacheUnavailable("RECONCILER_VALKEY_CA_FILE needs a rediss:// or valkeys:// URL")
            tls = {"ssl_ca_certs": ca_file, "ssl_cert_reqs": "required"}
        client = valkey.Valkey.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
            health_check_interval=30,
            **({"password": password} if password else {}),
            **tls,
        )
        return cls(client, _redact(url))

    def _fail(self, exc: Exception) -> CacheUnavailable:
        where = f"Valkey at {self.display_url or 'the configured URL'}"
        if isinstance(exc, _UNREACHABLE):
            return CacheUnavailable(f"{where} is unreachable: {exc}")
        return CacheUnavailable(f"{where} refused the command: {str(exc)[:200]}")

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

    def save_record(
        self, key: str, value: str, ttl_seconds: int, history: HistoryWrite, riders: Riders | None = None
    ) -> None:
        """One round trip (a script): the record, its history entry, trimming, the finish notice, and
        at a run's end its counter and the release of its lock; `riders` first, in the same trip."""
        keys, args = _save_keys(key, history), _save_args(value, ttl_seconds, history)
        try:
            if riders is not None and riders.client is not None and riders.client is not self.client:
                riders.flush(riders.client)  # meant for another Valkey: on their own, first
            if riders is not None:
                riders.run_script(self.client, self._save_record, keys, args)
            else:
                self._save_record(keys=keys, args=args)
        except _ERRORS as exc:
            raise self._fail(exc) from None

    def start_record(
        self, key: str, value: str, ttl_seconds: int, history: HistoryWrite, lock: tuple[str, str, int]
    ) -> RunStart | None:
        """One round trip (a script): the lock, the previous run's record, and `save_record`."""
        name, owner, lock_ttl = lock
        try:
            reply = self._start_record(
                keys=[*_save_keys(key, history), name],
                args=[*_save_args(value, ttl_seconds, history), owner, lock_ttl],
            )
        except _ERRORS as exc:
            raise self._fail(exc) from None
        if not reply:
            return None
        head, previous = reply
        return RunStart(previous_id=head or None, previous=previous or None)

    def usage(self) -> tuple[int, int]:
        try:
            memory = cast(dict[str, int], self.client.info("memory"))
            keys = cast(int, self.client.dbsize())
        except _ERRORS as exc:
            raise self._fail(exc) from None
        return int(memory.get("used_memory", 0)), int(keys)


def _save_keys(key: str, history: HistoryWrite) -> list[str]:
    return [
        key,
        history.key,
        history.spare_key,
        history.count[0] if history.count else key,
        history.unlock[0] if history.unlock else key,
    ]


def _save_args(value: str, ttl_seconds: int, history: HistoryWrite) -> list[str | int]:
    return [
        value,
        ttl_seconds,
        history.item,
        history.keep,
        "1" if history.push else "0",
        history.evict_prefix,
        "1" if history.mark_spare else "0",
        history.publish or "",
        history.count[1] if history.count else "",
        history.unlock[1] if history.unlock else "",
    ]


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
    password = settings.valkey_password.get_secret_value() if settings.valkey_password else None
    ca_file = str(settings.valkey_ca_file) if settings.valkey_ca_file else None
    return ValkeyCache.from_url(
        url, timeout=settings.cache_timeout_seconds, password=password, ca_file=ca_file
    )
