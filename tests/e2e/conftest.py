"""End-to-end fixtures: the real `reconciler run` and `reconciler api` processes against the
Kubernetes API emulator, a real valkey-server and the Slack/GitLab test servers, all on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from reconciler_testing.gitlab import GitLabTestServer
from reconciler_testing.slack import SlackTestServer
from tests.kube import KubeApi
from tests.valkey_server import ValkeyProcess, free_port

NAMESPACES = (
    "team-sre",
    "team-platform",
    "team-other",
    "team-fleet-a",
    "team-fleet-b",
    "team-gitlab-fleet-a",
    "team-gitlab-fleet-b",
)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def reconciler_command() -> list[str]:
    exe = shutil.which("reconciler", path=str(Path(sys.executable).parent)) or shutil.which("reconciler")
    return [exe] if exe else [sys.executable, "-m", "reconciler"]


def start_process(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Process:
    log_path = log_dir / f"{name}.log"
    handle = open(log_path, "wb")  # noqa: SIM115 - lives as long as the process
    popen = subprocess.Popen([*reconciler_command(), *args], env=env, stdout=handle, stderr=subprocess.STDOUT)
    return Process(name, popen, log_path)


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeApi]:
    api = KubeApi().start()
    for namespace in NAMESPACES:
        api.add_namespace(namespace)
    yield api
    api.stop()


@pytest.fixture(scope="session")
def slack() -> Iterator[SlackTestServer]:
    with SlackTestServer() as server:
        yield server


@pytest.fixture(scope="session")
def e2e_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("e2e"))


@pytest.fixture(scope="session")
def base_env(kube: KubeApi, valkey_server: ValkeyProcess, e2e_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "KUBERNETES_"))}
    env.update(
        {
            "KUBECONFIG": str(kube.write_kubeconfig(e2e_dir / "kubeconfig")),
            "RECONCILER_VALKEY_URL": valkey_server.url,
            "RECONCILER_MAX_WORKERS": "4",
            "RECONCILER_INTERVAL_CHECK_SECONDS": "1",
            "RECONCILER_MIN_INTERVAL_SECONDS": "1",
            "RECONCILER_BACKOFF_BASE_SECONDS": "1",
            "RECONCILER_BACKOFF_MAX_SECONDS": "4",
            "RECONCILER_RATE_LIMIT_RETRIES": "5",
            # The shared budget follows Slack's tiers; the test server enforces none unless asked.
            "RECONCILER_SLACK_RATE_WINDOW_SECONDS": "0.5",
            "RECONCILER_HTTP_TIMEOUT_SECONDS": "10",
            "RECONCILER_LOG_LEVEL": "DEBUG",
            "RECONCILER_RUNTIME_DIR": str(e2e_dir / "runtime"),
            # The Slack/GitLab test servers listen on 127.0.0.1: listed by address, nothing else allowed.
            "RECONCILER_ALLOWED_HOSTS": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@dataclass
class Sidecar:
    url: str
    process: Process

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)


def wait_http(url: str, process: Process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited:\n{process.log()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{process.name} did not answer {url}:\n{process.log()[-3000:]}")


def start_operator(name: str, env: dict[str, str], log_dir: Path, *namespaces: str) -> Process:
    port = free_port()
    args = ["run", "--standalone", "--liveness", f"http://127.0.0.1:{port}/healthz"]
    for namespace in namespaces:
        args += ["-n", namespace]
    process = start_process(name, args, env, log_dir)
    wait_http(f"http://127.0.0.1:{port}/healthz", process, timeout=60)
    return process


def start_sidecar(name: str, env: dict[str, str], log_dir: Path) -> Sidecar:
    port = free_port()
    process = start_process(name, ["api", "--port", str(port)], env, log_dir)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", process)
    return Sidecar(url, process)


@pytest.fixture(scope="session")
def operator(base_env: dict[str, str], e2e_dir: Path) -> Iterator[Process]:
    port = free_port()
    process = start_process(
        "operator",
        [
            "run",
            "-n",
            "team-sre",
            "-n",
            "team-platform",
            "--standalone",
            "--liveness",
            f"http://127.0.0.1:{port}/healthz",
        ],
        base_env,
        e2e_dir,
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", process, timeout=60)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def sidecar(base_env: dict[str, str], e2e_dir: Path) -> Iterator[Sidecar]:
    port = free_port()
    process = start_process("api", ["api", "--port", str(port)], base_env, e2e_dir)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", process)
    yield Sidecar(url, process)
    process.stop()


@pytest.fixture(scope="session")
def gitlab() -> Iterator[GitLabTestServer]:
    with GitLabTestServer() as server:
        yield server
