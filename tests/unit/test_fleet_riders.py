"""Writes riding with a run's next round trip (fleet/riders.py), on a real valkey-server: with the
budget's token, on their own at the end, and when Valkey is full, forgets scripts or dies."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import valkey

from reconciler.errors import CacheUnavailable, RateLimited
from reconciler.fleet import RateBudget
from reconciler.fleet.riders import Riders
from tests.valkey_server import ValkeyProcess


@pytest.fixture
def client(valkey_server: ValkeyProcess) -> valkey.Valkey:
    return valkey.Valkey.from_url(valkey_server.url, decode_responses=True)


def queue_write(riders: Riders, key: str, value: str) -> None:
    def commands(pipe: Any) -> None:
        pipe.hset(key, "field", value)
        pipe.expire(key, 60)

    riders.add(f"a test write of {key}", commands, 2)


def test_queued_writes_land_with_the_next_budget_token(client: valkey.Valkey) -> None:
    riders = Riders()
    budget = RateBudget(client, max_wait=1, riders=riders)
    first, second = f"reconciler:test:{uuid.uuid4().hex}", f"reconciler:test:{uuid.uuid4().hex}"
    queue_write(riders, first, "one")
    queue_write(riders, second, "two")
    assert client.hget(first, "field") is None, "queued, not sent yet"
    budget.acquire(f"acct-{uuid.uuid4().hex}:m", 5, 60, "m")
    assert (client.hget(first, "field"), client.hget(second, "field")) == ("one", "two")
    assert 0 < int(client.ttl(first)) <= 60  # type: ignore[arg-type]
    assert len(riders) == 0
    riders.flush(client)  # nothing left: no trip, no error


def test_the_token_is_still_counted_when_valkey_forgot_the_script(client: valkey.Valkey) -> None:
    """A restarted (or flushed) Valkey answers NOSCRIPT to the token's hash: the riders landed, and
    the token is asked again with the script itself, so the budget still counts it."""
    riders = Riders()
    budget = RateBudget(client, max_wait=0, riders=riders)
    key, write = f"acct-{uuid.uuid4().hex}:m", f"reconciler:test:{uuid.uuid4().hex}"
    client.script_flush()
    queue_write(riders, write, "landed")
    budget.acquire(key, 1, 60, "m")
    assert client.hget(write, "field") == "landed"
    assert client.zcard(f"reconciler:budget:{key}") == 1
    with pytest.raises(RateLimited):  # the one call of the window is taken
        budget.acquire(key, 1, 60, "m")


def acquire_outcome(budget: RateBudget) -> str:
    try:
        budget.acquire(f"acct-{uuid.uuid4().hex}:m", 5, 60, "m")
    except valkey.exceptions.ValkeyError as exc:
        return type(exc).__name__
    return "granted"


def test_a_full_valkey_refuses_the_riders_and_answers_the_token_as_without_them(
    client: valkey.Valkey, caplog: pytest.LogCaptureFixture
) -> None:
    """OOM (noeviction): the write-through is dropped with a warning (the snapshot learns the change
    at its next read, as when a write-through failed before), and the token gets the answer it gets
    without riders (a refusal reaches the caller as a Valkey error: the client then goes alone)."""
    riders = Riders()
    with_riders, alone = RateBudget(client, max_wait=1, riders=riders), RateBudget(client, max_wait=1)
    write = f"reconciler:test:{uuid.uuid4().hex}"
    queue_write(riders, write, "refused")
    old = client.config_get("maxmemory*")
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    try:
        with caplog.at_level(logging.WARNING):
            outcomes = (acquire_outcome(with_riders), acquire_outcome(alone))
    finally:
        client.config_set("maxmemory", old["maxmemory"])
        client.config_set("maxmemory-policy", old["maxmemory-policy"])
    assert outcomes[0] == outcomes[1]
    assert "Valkey refused a test write" in caplog.text
    assert client.hget(write, "field") is None
    assert len(riders) == 0


@pytest.fixture
def doomed(tmp_path: Path) -> Iterator[ValkeyProcess]:
    server = ValkeyProcess(tmp_path / "doomed").start()
    yield server
    server.stop()


def test_a_dead_valkey_keeps_the_riders_for_the_last_flush_which_only_warns(
    doomed: ValkeyProcess, caplog: pytest.LogCaptureFixture
) -> None:
    client = valkey.Valkey.from_url(doomed.url, decode_responses=True, socket_timeout=1)
    riders = Riders()
    budget = RateBudget(client, max_wait=1, riders=riders)
    queue_write(riders, "reconciler:test:lost", "x")
    doomed.stop()
    with pytest.raises(CacheUnavailable):
        budget.acquire("acct:m", 5, 60, "m")
    assert len(riders) == 1, "not sent: still queued"
    with caplog.at_level(logging.WARNING):
        riders.flush(client)  # the run's end: warns, never raises
    assert "learns of a test write of reconciler:test:lost" in caplog.text
    assert len(riders) == 0
