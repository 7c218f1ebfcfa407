"""The task store and cache backend against a real valkey-server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from valkey import exceptions as valkey_exceptions

from reconciler.cache import CacheCorrupt, ValkeyCache
from reconciler.errors import CacheUnavailable
from reconciler.models.task import ReconcileRef, TaskRecord, TaskStatus
from reconciler.tasks import STATS_KEY, TaskStore, lock_key, task_key
from tests.valkey_server import ValkeyProcess, free_port


@pytest.fixture
def store(valkey_server: ValkeyProcess) -> TaskStore:
    cache = ValkeyCache.from_url(valkey_server.url)
    cache.client.flushdb()
    return TaskStore(cache, ttl_seconds=120, history_size=3)


def make(name: str = "rec", status: TaskStatus = TaskStatus.PENDING) -> TaskRecord:
    return TaskRecord(
        reconcile=ReconcileRef(namespace="ns", name=name, generation=1),
        integration="slack-usergroups",
        status=status,
    )


def test_round_trip_history_ttl_and_trim(store: TaskStore) -> None:
    records = [make() for _ in range(5)]
    for record in records:
        store.save(record)
    assert store.get(records[-1].task_id) == records[-1]
    assert store.history("ns", "rec") == [r.task_id for r in reversed(records)][:3]
    assert store.latest(ReconcileRef(namespace="ns", name="rec")) == records[-1]
    ttl = store.cache.client.ttl(task_key(records[-1].task_id))  # type: ignore[attr-defined]
    assert 0 < ttl <= 120
    assert store.get("f" * 32) is None
    # Trimmed off the history: deleted at once, not left to their TTL.
    assert store.get(records[0].task_id) is None and store.get(records[1].task_id) is None


def test_the_last_failed_run_outlives_the_history(store: TaskStore) -> None:
    failed = make()
    store.save(failed)
    failed.status = TaskStatus.FAILED
    store.save(failed, new=False)
    later = [make() for _ in range(6)]
    for record in later:
        store.save(record)
    assert store.history("ns", "rec") == [*[r.task_id for r in reversed(later)][:3], failed.task_id]
    assert store.get(failed.task_id) == failed
    newer_failure = later[-1]
    newer_failure.status = TaskStatus.FAILED
    store.save(newer_failure, new=False)
    store.save(make())
    store.save(make())
    store.save(make())  # the old failure is trimmed now that a newer one is the one kept
    assert store.get(failed.task_id) is None and store.get(newer_failure.task_id) == newer_failure
    keys = store.cache.client.keys("reconciler:task:*")  # type: ignore[attr-defined]
    assert len(keys) == 4  # 3 newest + the last failure: bounded however many runs there were
    used, count = store.cache.usage()
    assert used > 0 and count >= 4


def test_a_full_or_read_only_valkey_sends_records_to_the_outbox(tmp_path: Path) -> None:
    valkey = ValkeyProcess(tmp_path / "v").start()
    admin = valkey.client()
    store = TaskStore(ValkeyCache.from_url(valkey.url), ttl_seconds=60, history_size=5)
    record = make(status=TaskStatus.RUNNING)
    store.save(record)
    record.status = TaskStatus.SUCCESS
    try:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1mb")
        filler = 0
        while True:  # fill it up: writes are refused with OOM from now on
            try:
                admin.set(f"filler:{filler}", "x" * 10_000)
            except valkey_exceptions.OutOfMemoryError:
                break
            filler += 1
        assert store.save_or_defer(record) is False and store.deferred == 1
        assert store.flush() == 1
        admin.config_set("maxmemory", "0")
        admin.replicaof("127.0.0.1", str(free_port()))  # a replica is read-only
        with pytest.raises(CacheUnavailable, match="refused"):
            store.save(record, new=False)
        assert store.flush() == 1
        admin.replicaof("no", "one")
        assert store.flush() == 0
        assert store.get(record.task_id) == record
    finally:
        valkey.stop()


def test_saving_again_does_not_duplicate_history(store: TaskStore) -> None:
    record = make()
    store.save(record)
    record.status = TaskStatus.SUCCESS
    store.save(record)
    assert store.history("ns", "rec") == [record.task_id]


def test_finished_records_are_published(store: TaskStore) -> None:
    subscription = store.cache.subscribe("reconciler:task-finished")

    def published(seconds: float) -> set[str]:
        """Everything published meanwhile (other tests' operators share this Valkey)."""
        seen: set[str] = set()
        deadline = time.monotonic() + seconds
        while (message := subscription.get(timeout=max(0.01, deadline - time.monotonic()))) is not None:
            seen.add(message)
            if time.monotonic() > deadline:
                break
        return seen

    try:
        running = make(status=TaskStatus.RUNNING)
        finished = make(status=TaskStatus.SUCCESS)
        store.save(running)
        store.save(finished)
        seen = published(1.0)
        assert finished.task_id in seen and running.task_id not in seen
    finally:
        subscription.close()


def test_corrupt_records_are_reported(store: TaskStore) -> None:
    store.cache.set(task_key("a" * 32), '{"task_id": 1}')
    with pytest.raises(CacheCorrupt, match="TaskRecord"):
        store.get("a" * 32)


def test_locks_are_exclusive_renewable_and_owner_safe(store: TaskStore) -> None:
    cache = store.cache
    assert cache.acquire_lock("l", "one", 10)
    assert not cache.acquire_lock("l", "two", 10)
    assert cache.extend_lock("l", "one", 20) and not cache.extend_lock("l", "two", 20)
    cache.release_lock("l", "two")  # not the owner: no effect
    assert not cache.acquire_lock("l", "two", 10)
    cache.release_lock("l", "one")
    with cache.lock("l", "two", 10) as held:
        assert held
    assert cache.acquire_lock("l", "three", 10)


def test_counts_by_integration_and_outcome(store: TaskStore) -> None:
    store.count_finished(make(status=TaskStatus.SUCCESS))
    store.count_finished(make(status=TaskStatus.SUCCESS))
    store.count_finished(make(status=TaskStatus.FAILED))
    assert store.counts() == {("slack-usergroups", "success"): 2, ("slack-usergroups", "failed"): 1}
    assert store.cache.counters(STATS_KEY)


def test_outbox_keeps_records_while_valkey_is_down(tmp_path: Path) -> None:
    valkey = ValkeyProcess(tmp_path / "v", appendonly=True).start()
    store = TaskStore(ValkeyCache.from_url(valkey.url, timeout=0.5), ttl_seconds=60, history_size=5)
    record = make(status=TaskStatus.RUNNING)
    store.save(record)
    record.status = TaskStatus.SUCCESS
    valkey.stop()
    assert store.save_or_defer(record) is False
    assert store.deferred == 1 and store.get(record.task_id) == record  # still served from memory
    assert store.flush() == 1
    valkey.start()
    assert store.flush() == 0
    fresh = TaskStore(ValkeyCache.from_url(valkey.url), ttl_seconds=60, history_size=5)
    assert fresh.get(record.task_id) == record and fresh.history("ns", "rec") == [record.task_id]
    valkey.stop()


def test_unreachable_cache_raises_cache_unavailable_without_password() -> None:
    cache = ValkeyCache.from_url(f"valkey://:s3cret-pass@127.0.0.1:{free_port()}/0", timeout=0.3)
    for call in (
        cache.ping,
        lambda: cache.get("k"),
        lambda: cache.set("k", "v"),
        lambda: cache.recent("k", 1),
    ):
        with pytest.raises(CacheUnavailable) as info:
            call()
        assert "s3cret-pass" not in str(info.value) and info.value.reason == "CacheUnavailable"


def test_a_run_starts_with_its_lock_its_record_and_the_previous_run_in_one_script(store: TaskStore) -> None:
    previous = make(status=TaskStatus.RUNNING)
    store.save(previous)
    first = make(status=TaskStatus.RUNNING)
    assert store.start(make("warm-up", TaskStatus.RUNNING), lock_ttl_seconds=30) is not None  # loads it
    commands = _calls(store)

    started = store.start(first, lock_ttl_seconds=30)

    assert started is not None and started.previous == previous
    assert _calls(store) - commands == 1  # one script call: lock, head, previous record, save
    assert store.history("ns", "rec") == [first.task_id, previous.task_id]
    assert store.get(first.task_id) == first
    lock = lock_key("ns", "rec")
    assert store.cache.get(lock) == first.task_id
    assert 0 < store.cache.client.ttl(lock) <= 30  # type: ignore[attr-defined]

    # The lock is held: the next run writes nothing and learns it.
    second = make(status=TaskStatus.RUNNING)
    assert store.start(second, lock_ttl_seconds=30) is None
    assert store.get(second.task_id) is None
    assert store.history("ns", "rec") == [first.task_id, previous.task_id]

    store.cache.release_lock(lock, first.task_id)
    fresh = make("other", status=TaskStatus.RUNNING)
    started = store.start(fresh, lock_ttl_seconds=30)
    assert started is not None and started.previous is None  # a Reconcile's first run


def test_a_start_survives_a_previous_record_that_is_not_valid(store: TaskStore) -> None:
    broken = make()
    store.save(broken)
    store.cache.set(task_key(broken.task_id), '{"not": "a record"}')
    started = store.start(make(status=TaskStatus.RUNNING), lock_ttl_seconds=30)
    assert started is not None and started.previous is None


def _calls(store: TaskStore) -> int:
    """Script calls so far (commandstats also counts the commands a script runs, under their names)."""
    stats = store.cache.client.info("commandstats")  # type: ignore[attr-defined]
    return sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))


def test_a_task_recorded_as_pending_is_not_its_own_previous_run(store: TaskStore) -> None:
    """A run queued behind busy workers is recorded as pending first: at its start, the run before
    it is the previous one (and is closed if it was interrupted), never the pending record itself."""
    before = make(status=TaskStatus.RUNNING)
    store.save(before)
    queued = make(status=TaskStatus.PENDING)
    store.save(queued)
    queued.status = TaskStatus.RUNNING
    started = store.start(queued, lock_ttl_seconds=30)
    assert started is not None and started.previous == before
    assert store.history("ns", "rec") == [queued.task_id, before.task_id]
    assert store.get(queued.task_id) == queued
