"""`reconciler run` and `make run` without a reachable cluster: one clear line, a non-zero exit within
the configured time, no traceback, nothing left running; and `run` stops the embedded Valkey it
started when it exits, unless a sidecar still uses it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import psutil
import pytest

from tests.e2e.conftest import reconciler_command, start_operator, start_sidecar
from tests.kube import KubeApi, write_kubeconfig
from tests.valkey_server import free_port

REPO = Path(__file__).resolve().parents[2]


def valkeys_in(runtime_dir: Path) -> list[psutil.Process]:
    """valkey-servers working in `runtime_dir` (the embedded one chdirs into it)."""
    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            if "valkey" in (proc.info["name"] or "") and Path(proc.cwd()) == runtime_dir:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def laptop_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No RECONCILER_VALKEY_URL (so the embedded Valkey would be used), a private runtime dir and HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "KUBERNETES_"))}
    env.pop("KUBECONFIG", None)
    env.update(
        {
            "HOME": str(tmp_path / "home"),
            "RECONCILER_RUNTIME_DIR": str(tmp_path / "runtime"),
            "RECONCILER_CLUSTER_CONNECT_TIMEOUT_SECONDS": "3",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


def run_operator_briefly(env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [*reconciler_command(), "run", "--standalone"], env=env, capture_output=True, text=True, timeout=60
    )
    return done, time.monotonic() - started


def assert_one_clean_line(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def test_run_with_a_kubeconfig_pointing_at_a_closed_port_exits_fast(tmp_path: Path) -> None:
    port = free_port()  # bound and released: nothing listens there
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
    env = laptop_env(tmp_path, KUBECONFIG=str(kubeconfig))
    done, took = run_operator_briefly(env)
    assert took < 60
    assert_one_clean_line(done, "error: cannot reach the Kubernetes API", f"127.0.0.1:{port}", "within 3s")
    assert "kube-test-token" not in done.stderr
    assert valkeys_in(tmp_path / "runtime") == []


def test_run_without_any_kube_context_says_so(tmp_path: Path) -> None:
    done, _ = run_operator_briefly(laptop_env(tmp_path))
    assert_one_clean_line(done, "no Kubernetes credentials")
    assert valkeys_in(tmp_path / "runtime") == []


class _NotKubernetes(BaseHTTPRequestHandler):
    """Answers like the status sidecar on :8080 does: 404 JSON for /version."""

    def do_GET(self) -> None:
        body = b'{"detail":"Not Found"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def not_kubernetes() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotKubernetes)
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_run_is_not_fooled_by_another_http_server(tmp_path: Path, not_kubernetes: str) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", not_kubernetes)
    done, _ = run_operator_briefly(laptop_env(tmp_path, KUBECONFIG=str(kubeconfig)))
    assert_one_clean_line(done, "does not answer like a Kubernetes API server", "HTTP 404")


def test_make_run_without_a_cluster_explains_how_to_get_one(tmp_path: Path, not_kubernetes: str) -> None:
    """scripts/run-dev.sh (what `make run` runs after installing) checks before kubectl or the sidecar."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", not_kubernetes)
    env = laptop_env(
        tmp_path, KUBECONFIG=str(kubeconfig), VENV=sys.prefix, RECONCILER_API_PORT=str(free_port())
    )
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "run-dev.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Traceback" not in output and "openapi" not in output
    assert "does not answer like a Kubernetes API server" in output
    for command in ("kind create cluster", "minikube start", "k3d cluster create", "make demo"):
        assert command in output
    assert "status sidecar on" not in output  # stopped before starting anything
    assert valkeys_in(tmp_path / "runtime") == []


def test_run_stops_the_embedded_valkey_it_started(kube: KubeApi, tmp_path: Path) -> None:
    env = laptop_env(tmp_path, KUBECONFIG=str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    operator = start_operator("operator-embedded", env, tmp_path, "team-other")
    try:
        deadline = time.monotonic() + 30
        while not valkeys_in(tmp_path / "runtime") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert valkeys_in(tmp_path / "runtime"), operator.log()[-2000:]
    finally:
        operator.popen.send_signal(signal.SIGTERM)
        operator.popen.wait(timeout=30)
    assert valkeys_in(tmp_path / "runtime") == [], operator.log()[-2000:]


def test_run_leaves_the_embedded_valkey_to_a_sidecar_still_using_it(kube: KubeApi, tmp_path: Path) -> None:
    env = laptop_env(tmp_path, KUBECONFIG=str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    runtime = tmp_path / "runtime"
    operator = start_operator("operator-first", env, tmp_path, "team-other")  # starts the Valkey
    sidecar = start_sidecar("sidecar-shared", env, tmp_path)
    try:
        operator.popen.send_signal(signal.SIGTERM)
        operator.popen.wait(timeout=30)
        assert valkeys_in(runtime), "the sidecar still listens on it"
        assert sidecar.client().get("/readyz").status_code == 200
    finally:
        sidecar.process.stop()
        subprocess.run([*reconciler_command(), "valkey-stop"], env=env, check=False, timeout=30)
    assert valkeys_in(runtime) == []
