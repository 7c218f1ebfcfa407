"""Writes riding with a run's next round trip (fleet/riders.py), on a real valkey-server: with the
budget's token, on their own at the end, and when Valkey is full, forgets scripts or dies."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import pytest
import valkey

from reconciler.cache import ValkeyCache
from reconciler.errors import CacheUnavailable, RateLimited
from reconciler.fleet import Fleet, RateBudget
from reconciler.fleet.riders import Riders
from reconciler.models.task import ReconcileRef, TaskRecord, TaskStatus
from reconciler.settings import Settings
from reconciler.tasks import TaskStore, lock_key
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


def test_the_apply_end_sends_what_is_left_unless_the_final_save_carries_it(client: valkey.Valkey) -> None:
    """`send_unless_carried` (Slack's and GitLab's `send_writes`): a run without a task record sends
    its last write-throughs itself; a run of a task leaves them to its final save."""
    alone, carried = (
        Fleet.create(client, Settings(), fresh_after=0),
        Fleet.create(client, Settings(), fresh_after=0, carried=True),
    )
    sent, kept = f"reconciler:test:{uuid.uuid4().hex}", f"reconciler:test:{uuid.uuid4().hex}"
    queue_write(alone.riders, sent, "sent")
    queue_write(carried.riders, kept, "kept")
    alone.riders.send_unless_carried()
    carried.riders.send_unless_carried()
    assert client.hget(sent, "field") == "sent" and len(alone.riders) == 0
    assert client.hget(kept, "field") is None and len(carried.riders) == 1


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


# --- riders bound to a task: carried by its record's saves (the operator's runs) ----------------


def task_store(client: valkey.Valkey) -> TaskStore:
    return TaskStore(ValkeyCache(client), ttl_seconds=600, history_size=5)


def record(status: TaskStatus = TaskStatus.RUNNING) -> TaskRecord:
    return TaskRecord(
        reconcile=ReconcileRef(namespace="ns", name=f"rec-{uuid.uuid4().hex[:6]}", generation=1),
        integration="slack-usergroups",
        status=status,
    )


def test_the_planned_save_carries_the_first_token_and_the_final_save_the_last_writes(
    client: valkey.Valkey,
) -> None:
    store, run = task_store(client), record()
    fleet = Fleet.create(client, Settings(), fresh_after=0, carried=True)
    key = f"acct-{uuid.uuid4().hex}:usergroups.create"
    fleet.budget.queue_token(key, 1, 60)
    store.save(run, new=True, riders=fleet.riders)  # the planned save: the token rides along
    assert client.zcard(f"reconciler:budget:{key}") == 1, "taken in the save's trip"
    fleet.budget.acquire(key, 1, 60, "create")  # uses that answer: no second token
    assert client.zcard(f"reconciler:budget:{key}") == 1
    write = f"reconciler:test:{uuid.uuid4().hex}"
    queue_write(fleet.riders, write, "through")
    lock = lock_key(run.reconcile.namespace, run.reconcile.name)
    client.set(lock, run.task_id)
    run.status = TaskStatus.SUCCESS
    store.save(run, new=False, unlock=(lock, run.task_id), riders=fleet.riders)
    assert client.hget(write, "field") == "through"
    assert client.get(lock) is None, "released in the same trip, after the write-through"
    assert len(fleet.riders) == 0


def test_a_token_never_carried_is_asked_for_by_acquire_itself(client: valkey.Valkey) -> None:
    """No planned save (or one that failed): the queued token is cancelled, not sent later."""
    fleet = Fleet.create(client, Settings(), fresh_after=0, carried=True)
    key = f"acct-{uuid.uuid4().hex}:m"
    fleet.budget.queue_token(key, 5, 60)
    fleet.budget.acquire(key, 5, 60, "m")
    assert client.zcard(f"reconciler:budget:{key}") == 1
    assert len(fleet.riders) == 0


def test_a_carried_token_answer_honours_a_retry_after_block(client: valkey.Valkey) -> None:
    """Slack said Retry-After before the planned save: the answer it carried is that wait, and a
    run may not sleep that long (RateLimited), exactly as when acquire asks itself."""
    store, run = task_store(client), record()
    fleet = Fleet.create(client, Settings(), fresh_after=0, carried=True)
    key = f"acct-{uuid.uuid4().hex}:m"
    fleet.budget.block(key, 30)
    fleet.budget.queue_token(key, 5, 60)
    store.save(run, new=True, riders=fleet.riders)
    with pytest.raises(RateLimited):
        fleet.budget.acquire(key, 5, 60, "m")
    assert client.zcard(f"reconciler:budget:{key}") == 0


def test_a_stale_carried_answer_is_not_used(client: valkey.Valkey) -> None:
    """A token granted longer ago than half the window's margin could land too late in the
    service's window: acquire takes a fresh one (the old one only lowers what the window grants)."""
    store, run = task_store(client), record()
    fleet = Fleet.create(client, Settings(), fresh_after=0, carried=True)
    key = f"acct-{uuid.uuid4().hex}:m"
    fleet.budget.queue_token(key, 5, 1.0)  # 1 s window: margin 50 ms
    store.save(run, new=True, riders=fleet.riders)
    time.sleep(0.05)
    fleet.budget.acquire(key, 5, 1.0, "m")
    assert client.zcard(f"reconciler:budget:{key}") == 2


def test_a_failed_final_save_drops_the_write_throughs_and_defers_the_record(
    doomed: ValkeyProcess, caplog: pytest.LogCaptureFixture
) -> None:
    client = valkey.Valkey.from_url(doomed.url, decode_responses=True, socket_timeout=1)
    store, run = task_store(client), record(TaskStatus.SUCCESS)
    fleet = Fleet.create(client, Settings(), fresh_after=0, carried=True)
    queue_write(fleet.riders, "reconciler:test:lost", "x")
    doomed.stop()
    with caplog.at_level(logging.WARNING):
        saved = store.save_or_defer(run, unlock=("lock", run.task_id), riders=fleet.riders)
    assert not saved and store.deferred == 1
    assert "learns of a test write of reconciler:test:lost" in caplog.text
    assert len(fleet.riders) == 0


def test_a_full_valkey_refuses_the_final_save_with_its_riders(
    client: valkey.Valkey, caplog: pytest.LogCaptureFixture
) -> None:
    """OOM: the write-through and the save are both refused; the record waits in the outbox and
    the lock stays taken (its TTL frees it), so no run starts on a snapshot missing that write."""
    store, run = task_store(client), record(TaskStatus.SUCCESS)
    fleet = Fleet.create(client, Settings(), fresh_after=0, carried=True)
    write = f"reconciler:test:{uuid.uuid4().hex}"
    queue_write(fleet.riders, write, "refused")
    lock = lock_key(run.reconcile.namespace, run.reconcile.name)
    client.set(lock, run.task_id)
    old = client.config_get("maxmemory*")
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    try:
        with caplog.at_level(logging.WARNING):
            saved = store.save_or_defer(run, unlock=(lock, run.task_id), riders=fleet.riders)
    finally:
        client.config_set("maxmemory", old["maxmemory"])
        client.config_set("maxmemory-policy", old["maxmemory-policy"])
    assert not saved and store.deferred == 1
    assert client.hget(write, "field") is None
    assert client.get(lock) == run.task_id
    assert "Valkey refused a test write" in caplog.text
