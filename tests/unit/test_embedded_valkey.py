"""With RECONCILER_VALKEY_URL unset, `run` and `api` share one embedded valkey-server."""

from __future__ import annotations

from pathlib import Path

from reconciler.cache import connect_cache
from reconciler.cache.embedded import ensure_embedded_valkey, stop_embedded_valkey
from reconciler.settings import Settings


def test_started_once_shared_and_persistent(tmp_path: Path) -> None:
    runtime = tmp_path / "rt"
    try:
        first = ensure_embedded_valkey(runtime)
        second = ensure_embedded_valkey(runtime)  # what the second command does: finds the first one
        assert first == second == f"unix://{runtime / 'valkey.sock'}"
        assert (runtime.stat().st_mode & 0o777) == 0o700
        cache = connect_cache(Settings(valkey_url=None, runtime_dir=runtime))
        cache.set("k", "v")
        assert connect_cache(Settings(valkey_url=None, runtime_dir=runtime)).get("k") == "v"
        cache.client.close()
        assert stop_embedded_valkey(runtime)
        ensure_embedded_valkey(runtime)  # restarted: the append-only file kept the data
        assert connect_cache(Settings(valkey_url=None, runtime_dir=runtime)).get("k") == "v"
    finally:
        stop_embedded_valkey(runtime)
    assert not stop_embedded_valkey(runtime)
