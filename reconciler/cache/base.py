"""A small sync cache interface, so the operator, sidecar and scripts share one implementation.

Sync on purpose (README, "Design"): the operator calls it from worker threads, the sidecar from
its thread pool. Backends raise `CacheUnavailable` when the server cannot be reached.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from reconciler.fleet.riders import Riders

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class HistoryWrite:
    """How `save_record` files a record in a list of recent ids (see `CacheBackend.save_record`)."""

    key: str
    item: str
    keep: int
    push: bool
    """Put `item` first in the list (a new record); False for later saves of the same record."""
    evict_prefix: str
    """Ids trimmed off the list lose their `evict_prefix + id` key at once, not at its TTL..."""
    spare_key: str
    """...except the id stored at `spare_key`, which stays at the list's end (the last failure)."""
    mark_spare: bool = False
    """Store `item` at `spare_key`."""
    publish: str | None = None
    """Channel to announce `item` on."""
    count: tuple[str, str] | None = None
    """(hash, field): add 1 to that counter in the same round trip (a finished run's metrics)."""
    unlock: tuple[str, str] | None = None
    """(lock, owner): then release that lock if `owner` still holds it (the run's end)."""


@dataclass(frozen=True)
class RunStart:
    """What `start_record` found before it saved: the history's head (the previous run) and its
    record's JSON (None when it expired)."""

    previous_id: str | None
    previous: str | None


class CacheCorrupt(Exception):
    """A cached value is not what its model says: reported, never silently used."""


class Subscription(ABC):
    @abstractmethod
    def get(self, timeout: float) -> str | None:
        """The next message, or None after `timeout` seconds. Raises CacheUnavailable."""

    @abstractmethod
    def close(self) -> None: ...


class CacheBackend(ABC):
    @abstractmethod
    def get(self, key: str) -> str | None: ...

    @abstractmethod
    def set(self, key: str, value: str, ttl_seconds: int | None = None) -> None: ...

    @abstractmethod
    def push_recent(self, key: str, value: str, *, keep: int, ttl_seconds: int | None = None) -> None:
        """Put `value` first in the list at `key`, keeping at most `keep` entries."""

    @abstractmethod
    def recent(self, key: str, limit: int) -> list[str]: ...

    @abstractmethod
    def acquire_lock(self, name: str, owner: str, ttl_seconds: int) -> bool:
        """Take `name` for `owner` unless someone else holds it; it expires after `ttl_seconds`."""

    def start_record(
        self, key: str, value: str, ttl_seconds: int, history: HistoryWrite, lock: tuple[str, str, int]
    ) -> RunStart | None:
        """A run's start: take `lock` (name, owner, ttl) unless another owner holds it (then None,
        nothing written), read the previous run (the history's head that is not `history.item`: a
        pending record of this task may be) and its record, then `save_record`. Valkey does
        it all in one round trip (a script); this fallback in four."""
        name, owner, lock_ttl = lock
        if not self.acquire_lock(name, owner, lock_ttl):
            return None
        head = next((id_ for id_ in self.recent(history.key, 2) if id_ != history.item), None)
        previous = self.get(history.evict_prefix + head) if head else None
        self.save_record(key, value, ttl_seconds, history)
        return RunStart(previous_id=head, previous=previous)

    @abstractmethod
    def extend_lock(self, name: str, owner: str, ttl_seconds: int) -> bool:
        """Push `name`'s expiry out if `owner` still holds it; False if it was lost."""

    @abstractmethod
    def release_lock(self, name: str, owner: str) -> None:
        """Release `name` only if `owner` still holds it."""

    @abstractmethod
    def publish(self, channel: str, message: str) -> None: ...

    @abstractmethod
    def subscribe(self, channel: str) -> Subscription:
        """Listen to `channel` on a connection of its own."""

    @abstractmethod
    def incr(self, key: str, field: str, amount: int = 1) -> None:
        """Add to a counter in the hash at `key` (metrics shared between processes)."""

    @abstractmethod
    def counters(self, key: str) -> dict[str, int]: ...

    @abstractmethod
    def ping(self) -> None:
        """Raise CacheUnavailable unless the server answers."""

    @abstractmethod
    def save_record(
        self, key: str, value: str, ttl_seconds: int, history: HistoryWrite, riders: Riders | None = None
    ) -> None:
        """Set `key` and file it in a bounded history, atomically and in one round trip, with the
        run's queued `riders` (fleet/riders.py) sent first in that trip."""

    @abstractmethod
    def usage(self) -> tuple[int, int]:
        """(bytes of memory used, number of keys): for the operator's gauges."""

    def get_model(self, key: str, model: type[M]) -> M | None:
        raw = self.get(key)
        if raw is None:
            return None
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            raise CacheCorrupt(
                f"{key} does not hold a valid {model.__name__}: {exc.errors()[0]['msg']}"
            ) from None

    def set_model(self, key: str, value: BaseModel, ttl_seconds: int | None = None) -> None:
        self.set(key, value.model_dump_json(), ttl_seconds)

    @contextmanager
    def lock(self, name: str, owner: str, ttl_seconds: int) -> Iterator[bool]:
        """`with cache.lock(...) as held:`; `held` is False when another owner has it."""
        held = self.acquire_lock(name, owner, ttl_seconds)
        try:
            yield held
        finally:
            if held:
                self.release_lock(name, owner)
