"""Run locks held by LockLease against a real valkey-server: renewed while held (by one shared
thread, however many runs), released at the end, and never renewed after release."""

from __future__ import annotations

import threading
import time

from reconciler.cache import ValkeyCache
from reconciler_operator.leases import RENEWER, LockLease
from tests.valkey_server import ValkeyProcess


def test_held_leases_outlive_their_ttl_and_are_released(valkey_server: ValkeyProcess) -> None:
    cache = ValkeyCache.from_url(valkey_server.url)
    names = [f"lock:lease-test-{i}" for i in range(5)]
    for name in names:
        assert cache.acquire_lock(name, "run-a", 1)
    leases = [LockLease(cache, name, "run-a", 1) for name in names]
    for lease in leases:
        lease.__enter__()
    before = {t.name for t in threading.enumerate()}
    time.sleep(2.5)  # 2.5 TTLs: gone unless renewed
    assert all(cache.client.get(name) == "run-a" for name in names)
    assert not any(name.startswith("lease-") for name in before)  # no thread per lease
    assert sum(t.name == "lock-leases" for t in threading.enumerate()) == 1
    for lease in leases:
        lease.__exit__(None, None, None)
    assert not any(cache.client.exists(name) for name in names)
    # Released: a renewal due later does not bring a lock back, nor extend another owner's.
    assert cache.acquire_lock(names[0], "run-b", 1)
    leases[0].renew()
    time.sleep(1.3)
    assert not cache.client.exists(names[0])
    assert not any(RENEWER.watching(lease) for lease in leases)
