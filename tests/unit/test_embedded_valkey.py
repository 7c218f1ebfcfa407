"""With RECONCILER_VALKEY_URL unset, `run` and `api` share one embedded valkey-server."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from reconciler.cache import connect_cache
from reconciler.cache.embedded import ensure_embedded_valkey, ensure_private_dir, stop_embedded_valkey
from reconciler.errors import CacheUnavailable
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


# --- a private directory, or none at all ----------------------------------------------------------


def test_the_directory_is_created_private(tmp_path: Path) -> None:
    runtime = tmp_path / "new" / "rt"
    ensure_private_dir(runtime)
    info = runtime.lstat()
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
    ensure_private_dir(runtime)  # an existing private one is fine


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o755, 0o1777])
def test_a_directory_others_may_use_is_refused(tmp_path: Path, mode: int) -> None:
    runtime = tmp_path / "planted"
    runtime.mkdir()
    runtime.chmod(mode)
    with pytest.raises(CacheUnavailable, match=f"has mode {mode:04o}: others may use it; run `chmod 700"):
        ensure_embedded_valkey(runtime)
    assert not (runtime / "valkey.lock").exists()


def test_a_symlinked_directory_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "rt").symlink_to(target)
    with pytest.raises(CacheUnavailable, match="is a symlink"):
        ensure_embedded_valkey(tmp_path / "rt")
    assert list(target.iterdir()) == []


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to plant a directory owned by someone else")
def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    runtime = tmp_path / "theirs"
    runtime.mkdir(mode=0o700)
    os.chown(runtime, 4242, 4242)
    with pytest.raises(CacheUnavailable, match="belongs to uid 4242, not to you"):
        ensure_embedded_valkey(runtime)


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    runtime = tmp_path / "rt"
    ensure_private_dir(runtime)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (runtime / "valkey.lock").symlink_to(victim)
    with pytest.raises(CacheUnavailable, match=r"lock .* is a symlink"):
        ensure_embedded_valkey(runtime)
    assert victim.read_text() == "precious"
