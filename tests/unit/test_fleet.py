"""The shared rate budget and the single-flight reads, under threads, on a real valkey-server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest
import valkey

from reconciler.deadline import run_deadline
from reconciler.errors import RateLimited, Timeout
from reconciler.fleet import Fleet, RateBudget, ReadStamp, SharedReads
from reconciler.settings import Settings
from tests.valkey_server import ValkeyProcess


@pytest.fixture
def client(valkey_server: ValkeyProcess) -> valkey.Valkey:
    return valkey.Valkey.from_url(valkey_server.url, decode_responses=True)


def in_threads(count: int, work: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(i: int) -> None:
        start.wait()
        try:
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


def test_budget_grants_at_most_limit_per_window_across_threads(client: valkey.Valkey) -> None:
    key, limit, window = f"acct-{uuid.uuid4().hex}:users.list", 5, 1.0
    grants: list[float] = []
    lock = threading.Lock()

    def work(_: int) -> None:
        budget = RateBudget(client, max_wait=5)  # one instance per worker, as runs have
        for _ in range(2):
            budget.acquire(key, limit, window, "users.list")
            with lock:
                grants.append(time.monotonic())

    assert in_threads(8, work) == []
    assert len(grants) == 16
    grants.sort()
    # Any `window` holds at most `limit` grants: the 6th grant is a full window after the 1st.
    for i in range(limit, len(grants)):
        assert grants[i] - grants[i - limit] >= window - 0.01
    # ...and the budget is used: 16 calls at 5 a second take about 3 windows, not much more.
    assert grants[-1] - grants[0] < 3 * (window + 0.05) + 1.0


def test_budget_raises_rate_limited_instead_of_sleeping_long(client: valkey.Valkey) -> None:
    key = f"acct-{uuid.uuid4().hex}:usergroups.list"
    budget = RateBudget(client, max_wait=0.2)
    for _ in range(3):
        budget.acquire(key, 3, 30.0, "usergroups.list")
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        budget.acquire(key, 3, 30.0, "usergroups.list")
    assert time.monotonic() - started < 0.2
    assert caught.value.reason == "RateLimited"
    assert caught.value.retry_after is not None and 25 < caught.value.retry_after <= 31


def test_retry_after_blocks_every_worker_on_that_account_and_method(client: valkey.Valkey) -> None:
    key = f"acct-{uuid.uuid4().hex}:usergroups.list"
    other = RateBudget(client, max_wait=0.1)
    RateBudget(client, max_wait=0.1).block(key, 20)
    with pytest.raises(RateLimited) as caught:
        other.acquire(key, 100, 60.0, "usergroups.list")
    assert caught.value.retry_after is not None and 18 < caught.value.retry_after <= 20
    other.acquire(f"{key}-another-method", 100, 60.0, "another")  # other methods are not blocked


def test_a_hostile_retry_after_is_capped(client: valkey.Valkey) -> None:
    key = f"acct-{uuid.uuid4().hex}:m"
    RateBudget(client, max_wait=0.1).block(key, 86400)
    assert 0 < client.pttl(f"reconciler:budget:{key}:blocked") <= 900_000


def test_single_flight_one_fetch_for_many_waiting_threads(client: valkey.Valkey) -> None:
    key = f"reconciler:test:{uuid.uuid4().hex}"
    fetches: list[float] = []
    seen: list[ReadStamp] = []
    lock = threading.Lock()
    asked = time.time()

    def fetch(stamp: ReadStamp) -> ReadStamp:
        with lock:
            fetches.append(time.time())
        time.sleep(0.3)  # a slow usergroups.list: the others wait for it, not for the limit
        client.hset(f"{key}:{stamp.version}:data", "answer", "42")
        return stamp

    def work(_: int) -> None:
        reads = SharedReads(client, wait_seconds=10, ttl_seconds=60)
        stamp = reads.fresh(key, asked, ("data",), fetch)
        assert client.hget(reads.part(key, stamp, "data"), "answer") == "42"
        with lock:
            seen.append(stamp)

    assert in_threads(12, work) == []
    assert len(fetches) == 1
    assert len({s.version for s in seen}) == 1
    assert seen[0].started >= asked


def test_a_request_after_the_read_started_gets_a_new_read(client: valkey.Valkey) -> None:
    key = f"reconciler:test:{uuid.uuid4().hex}"
    reads = SharedReads(client, wait_seconds=10, ttl_seconds=60)
    versions: list[str] = []

    def fetch(stamp: ReadStamp) -> ReadStamp:
        versions.append(stamp.version)
        return stamp

    first = reads.fresh(key, time.time(), (), fetch)
    assert reads.fresh(key, first.started, (), fetch) == first  # asked before it started: shared
    later = time.time()
    second = reads.fresh(key, later, (), fetch)  # asked after: must not be served the old read
    assert second.started >= later and second.version != first.version
    assert len(versions) == 2
    assert reads.fresh(key, later - 100, (), fetch) == second  # an interval run takes the newest


def test_waiters_take_over_when_the_fetching_worker_fails(client: valkey.Valkey) -> None:
    key = f"reconciler:test:{uuid.uuid4().hex}"
    calls: list[int] = []
    lock = threading.Lock()

    def fetch(stamp: ReadStamp) -> ReadStamp:
        with lock:
            calls.append(1)
            first = len(calls) == 1
        time.sleep(0.1)
        if first:
            raise RateLimited("budget spent", retry_after=5)
        return stamp

    outcomes: list[str] = []

    def work(_: int) -> None:
        try:
            SharedReads(client, wait_seconds=5, ttl_seconds=60).fresh(key, time.time() - 1, (), fetch)
            outcomes.append("ok")
        except RateLimited:
            outcomes.append("limited")

    assert in_threads(6, work) == []
    assert outcomes.count("limited") == 1
    assert outcomes.count("ok") == 5
    assert len(calls) == 2


def test_waiting_for_a_shared_read_ends_with_the_runs_deadline(client: valkey.Valkey) -> None:
    key = f"reconciler:test:{uuid.uuid4().hex}"
    # Another worker holds the read's lock (its fetch is slow); the waiter's own bound is long.
    client.set(f"{key}:lock", ReadStamp("other", time.time()).to_json(), px=60_000)
    fetched: list[ReadStamp] = []

    def fetch(stamp: ReadStamp) -> ReadStamp:
        fetched.append(stamp)
        return stamp

    reads = SharedReads(client, wait_seconds=30, ttl_seconds=60)
    started = time.monotonic()
    with run_deadline(0.3), pytest.raises(Timeout, match="RECONCILER_RUN_DEADLINE_SECONDS"):
        reads.fresh(key, time.time(), (), fetch)
    assert time.monotonic() - started < 5  # the run's 0.3 s, not the 30 s wait
    assert fetched == []  # past its deadline, the run does not start the read itself

    # Outside any run (unbounded), the waiter's own bound still applies and it then reads itself.
    short = SharedReads(client, wait_seconds=0.2, ttl_seconds=60)
    assert short.fresh(key, time.time(), (), fetch) == fetched[0]


def staggered(requests: list[float], work: Callable[[int, float], None]) -> list[BaseException]:
    """Thread i asks at `requests[i]` seconds after a common start (its request time is the moment it
    asks, as a run's is when the operator sees the request)."""
    start = time.monotonic() + 0.1

    def one(i: int) -> None:
        time.sleep(max(0.0, start + requests[i] - time.monotonic()))
        work(i, time.time())

    return in_threads(len(requests), one)


def test_runs_requested_within_the_gather_window_share_one_read(client: valkey.Valkey) -> None:
    """Runs asked for 0.3 s apart: without gathering, the second arrives after the first's short
    fetch and needs a read of its own; with a 1 s window, one read serves both. Runs asked for
    after that read started get a newer one (which again gathers): 4 runs, 2 reads. Every run is
    served a read that started after its own request."""
    requests = [0.0, 0.3, 1.5, 1.8]

    def measure(gather_seconds: float) -> tuple[list[float], dict[int, tuple[float, ReadStamp]]]:
        key = f"reconciler:test:{uuid.uuid4().hex}"
        fetch_starts: list[float] = []
        served: dict[int, tuple[float, ReadStamp]] = {}
        lock = threading.Lock()

        def fetch(stamp: ReadStamp) -> ReadStamp:
            with lock:
                fetch_starts.append(time.time())
            time.sleep(0.05)  # usergroups.list: much shorter than the gaps between requests
            return stamp

        def work(i: int, asked: float) -> None:
            reads = SharedReads(client, wait_seconds=10, ttl_seconds=60, gather_seconds=gather_seconds)
            stamp = reads.fresh(key, asked, (), fetch, gather=True)
            with lock:
                served[i] = (asked, stamp)

        assert staggered(requests, work) == []
        return fetch_starts, served

    alone, served_alone = measure(0.0)
    gathered, served = measure(1.0)
    assert len(alone) == 4
    assert len(gathered) == 2
    assert served[0][1] == served[1][1] and served[2][1] == served[3][1] != served[0][1]
    for fetch_starts, runs in ((alone, served_alone), (gathered, served)):
        for asked, stamp in runs.values():
            assert stamp.started >= asked  # the freshness rule
            # ...and the stamp does not claim a later start than its fetch really had.
            assert any(stamp.started <= start < stamp.started + 0.5 for start in fetch_starts)


def test_a_run_queued_past_the_window_and_an_interval_run_do_not_pause(client: valkey.Valkey) -> None:
    reads = SharedReads(client, wait_seconds=10, ttl_seconds=60, gather_seconds=2.0)

    def fetch(stamp: ReadStamp) -> ReadStamp:
        return stamp

    queued = time.time() - 3.0  # asked 3 s ago, waited for a worker since
    assert (
        reads.fresh(f"reconciler:test:{uuid.uuid4().hex}", queued, (), fetch, gather=True).started >= queued
    )
    interval = time.time() - 60.0  # may share a read up to a minute old
    reads.fresh(f"reconciler:test:{uuid.uuid4().hex}", interval, (), fetch, gather=True)
    # A read not asked to gather (a directory sweep, a GitLab lookup) never pauses either.
    reads.fresh(f"reconciler:test:{uuid.uuid4().hex}", time.time(), (), fetch)
    assert reads.fetched == 3
    assert reads.gathered == 0.0


def test_a_gather_cut_short_by_the_run_deadline_stamps_the_reads_real_start(client: valkey.Valkey) -> None:
    reads = SharedReads(client, wait_seconds=10, ttl_seconds=60, gather_seconds=5.0)
    fetch_starts: list[float] = []

    def fetch(stamp: ReadStamp) -> ReadStamp:
        fetch_starts.append(time.time())
        return stamp

    asked = time.time()
    with run_deadline(0.3):
        stamp = reads.fresh(f"reconciler:test:{uuid.uuid4().hex}", asked, (), fetch, gather=True)
    assert 0 < reads.gathered <= 0.3
    assert asked <= stamp.started <= fetch_starts[0]


def gather_in_threads(
    client: valkey.Valkey, threads: int, workers: int, gather_seconds: float
) -> tuple[list[float], list[tuple[float, ReadStamp]], float]:
    """`threads` runs of a process with a pool of `workers` ask for one read at once."""
    key = f"reconciler:test:{uuid.uuid4().hex}"
    fetch_starts: list[float] = []
    served: list[tuple[float, ReadStamp]] = []
    lock = threading.Lock()

    def fetch(stamp: ReadStamp) -> ReadStamp:
        with lock:
            fetch_starts.append(time.time())
        time.sleep(0.05)
        return stamp

    def work(_: int) -> None:
        reads = SharedReads(
            client, wait_seconds=60, ttl_seconds=60, gather_seconds=gather_seconds, workers=workers
        )
        asked = time.time()
        stamp = reads.fresh(key, asked, (), fetch, gather=True)
        with lock:
            served.append((asked, stamp))

    began = time.monotonic()
    assert in_threads(threads, work) == []
    return fetch_starts, served, time.monotonic() - began


def test_a_leader_starts_at_once_when_every_worker_waits_for_its_read(client: valkey.Valkey) -> None:
    """All 4 workers of the process ask at once with a 30 s window: nobody else here can join, so
    the read starts at once (not 30 s later), and the waiters are woken when it lands instead of
    sleeping until the leader's planned start. One read serves all, started after every request."""
    fetch_starts, served, took = gather_in_threads(client, threads=4, workers=4, gather_seconds=30.0)
    assert len(fetch_starts) == 1
    assert took < 10
    assert len(served) == 4
    assert len({stamp for _, stamp in served}) == 1
    assert all(stamp.started >= asked for asked, stamp in served)


def test_a_leader_waits_out_its_window_while_a_worker_of_the_process_may_still_join(
    client: valkey.Valkey,
) -> None:
    """3 of a pool of 4 ask: the 4th worker may still ask for the read, so the leader gathers for
    its whole window (0.6 s); one read still serves the 3. Without a known pool size: the same."""
    for workers in (4, None):
        fetch_starts, served, took = gather_in_threads(client, threads=3, workers=workers, gather_seconds=0.6)  # type: ignore[arg-type]
        assert len(fetch_starts) == 1
        assert took >= 0.55
        assert len({stamp for _, stamp in served}) == 1
        assert all(stamp.started >= asked for asked, stamp in served)


def test_a_worker_asking_late_releases_a_pausing_leader(client: valkey.Valkey) -> None:
    """2 workers of 2: the second asks 0.3 s after the first; the first's 30 s pause ends then."""
    key = f"reconciler:test:{uuid.uuid4().hex}"
    fetches: list[float] = []
    served: list[tuple[float, ReadStamp]] = []

    def fetch(stamp: ReadStamp) -> ReadStamp:
        fetches.append(time.time())
        return stamp

    def work(_: int, asked: float) -> None:
        reads = SharedReads(client, wait_seconds=60, ttl_seconds=60, gather_seconds=30.0, workers=2)
        served.append((asked, reads.fresh(key, asked, (), fetch, gather=True)))

    began = time.monotonic()
    assert staggered([0.0, 0.3], work) == []
    assert time.monotonic() - began < 10
    assert len(fetches) == 1
    assert all(stamp.started >= asked for asked, stamp in served)


def test_the_fleet_gives_shared_reads_the_operators_pool_size(client: valkey.Valkey) -> None:
    """RECONCILER_MAX_WORKERS reaches the shared reads through Fleet.create: with a pool of 2, two
    runs asking at once with a 5 s window share a read that starts at once."""
    settings = Settings(max_workers=2, shared_read_coalesce_seconds=5.0)
    key = f"reconciler:test:{uuid.uuid4().hex}"
    fetches: list[float] = []

    def fetch(stamp: ReadStamp) -> ReadStamp:
        fetches.append(time.time())
        return stamp

    def work(_: int) -> None:
        fleet = Fleet.create(client, settings, fresh_after=time.time())
        fleet.reads.fresh(key, fleet.fresh_after, (), fetch, gather=True)

    began = time.monotonic()
    assert in_threads(2, work) == []
    assert len(fetches) == 1
    assert time.monotonic() - began < 4, "not the whole 5 s window"


def test_lead_if_free_fetches_when_nobody_does_and_never_waits_for_another(client: valkey.Valkey) -> None:
    """While another worker fetches a read, `lead_if_free` returns None at once (no wait, no second
    fetch); once it landed, the read itself; with none at all, it fetches it."""
    key = f"reconciler:test:{uuid.uuid4().hex}"
    fetches: list[float] = []
    leading = threading.Event()

    def slow(stamp: ReadStamp) -> ReadStamp:
        fetches.append(time.time())
        leading.set()
        time.sleep(0.5)
        return stamp

    reads = SharedReads(client, wait_seconds=60, ttl_seconds=60)
    asked = time.time()
    leader = threading.Thread(target=reads.fresh, args=(key, asked, (), slow))
    leader.start()
    assert leading.wait(10)
    began = time.monotonic()
    assert reads.lead_if_free(key, asked, (), slow) is None
    assert time.monotonic() - began < 0.3, "did not wait for the leader"
    leader.join(timeout=10)
    landed = reads.lead_if_free(key, asked, (), slow)
    assert landed is not None and landed.started >= asked
    assert len(fetches) == 1

    other = f"reconciler:test:{uuid.uuid4().hex}"
    fetched = reads.lead_if_free(other, time.time(), (), lambda stamp: stamp)
    assert fetched is not None and reads.current(other) == fetched


def test_a_worker_fetching_another_read_cannot_join_so_a_gathering_leader_starts_at_once(
    client: valkey.Valkey,
) -> None:
    """A pool of 3: one worker sweeps another read (1 s), two ask for this one with a 30 s window.
    No worker of the process is left to join, so this read starts at once, during the sweep."""
    key, other = (f"reconciler:test:{uuid.uuid4().hex}" for _ in range(2))
    starts: dict[str, float] = {}
    sweeping = threading.Event()

    def sweep(stamp: ReadStamp) -> ReadStamp:
        starts["other"] = time.time()
        sweeping.set()
        time.sleep(1.0)
        return stamp

    def fetch(stamp: ReadStamp) -> ReadStamp:
        starts.setdefault("this", time.time())
        return stamp

    def work(i: int) -> None:
        reads = SharedReads(client, wait_seconds=60, ttl_seconds=60, gather_seconds=30.0, workers=3)
        if i == 0:
            reads.lead_if_free(other, time.time(), (), sweep)
            return
        assert sweeping.wait(10)
        reads.fresh(key, time.time(), (), fetch, gather=True)

    began = time.monotonic()
    assert in_threads(3, work) == []
    assert time.monotonic() - began < 10, "not the 30 s window"
    assert starts["this"] - starts["other"] < 0.9, "started while the other read was in flight"
