"""Real processes on loopback, started and stopped by the scenarios.

- `KubeProc`: the Kubernetes API emulator (tests/kube.py) in its own process, plus a small client.
- `SlackProc`: the Slack test server in its own process, with call counters (bench/slack_proc.py).
- `Valkey`: a real valkey-server (tests/valkey_server.py).
- `start_operator` / `start_sidecar`: `reconciler run -A --standalone` and `reconciler api`, the way
  tests/e2e/conftest.py starts them, with the environment a deployment would set.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench.common import REPO_ROOT
from tests import builders
from tests.kube import write_kubeconfig
from tests.valkey_server import ValkeyProcess, free_port

CRD_PATH = "/apis/reconciler.dev/v1alpha1"
JSON_HEADERS = {"Content-Type": "application/json"}


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "KUBERNETES_"))}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def spawn(name: str, cmd: list[str], env: dict[str, str], log_dir: Path, *, first_line: bool = False) -> Proc:
    """Start `cmd`; with `first_line`, wait for the URL it prints first on stdout."""
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the process
    popen = subprocess.Popen(
        cmd,
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE if first_line else log,
        stderr=log,
        stdin=subprocess.PIPE if first_line else subprocess.DEVNULL,
    )
    proc = Proc(name, popen, log_path)
    if first_line:
        assert popen.stdout is not None
        line = popen.stdout.readline().decode().strip()
        if not line:
            popen.wait(timeout=5)
            raise RuntimeError(f"{name} exited before printing its URL:\n{proc.log_tail()}")
        proc.url = line
    return proc


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def reconciler_command() -> list[str]:
    exe = shutil.which("reconciler", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "reconciler"]


def wait_http(url: str, proc: Proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not answer {url} within {timeout:g}s:\n{proc.log_tail()}")


# --- Kubernetes API ----------------------------------------------------------------------------


class KubeProc:
    """The emulator in a subprocess, and what kubectl would do against it."""

    def __init__(self, log_dir: Path, namespaces: list[str]) -> None:
        args: list[str] = []
        for namespace in namespaces:
            args += ["-n", namespace]
        self.proc = spawn(
            "kube-api", python_module("bench.kube_proc", *args), base_env(), log_dir, first_line=True
        )
        self.url = self.proc.url
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        self.http.close()
        self.proc.stop(timeout=2)  # aiohttp would wait for open watch streams to end

    def request_counts(self) -> dict[str, int]:
        """After stop(): requests served, by action and resource (printed by the emulator at exit)."""
        for line in reversed(self.proc.log_tail(200_000).splitlines()):
            if line.startswith("BENCH-COUNTS "):
                return dict(json.loads(line.split(" ", 1)[1]))
        return {}

    def write_kubeconfig(self, path: Path) -> Path:
        return write_kubeconfig(path, self.url, name="bench")

    def create_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            # Only Secrets labelled as credentials may be used by Reconciles (tenancy rules).
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"reconciler.dev/credentials": "true"},
            },
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        _check(self.http.post(f"/api/v1/namespaces/{namespace}/secrets", json=body))

    def create_reconcile(self, body: dict[str, Any]) -> None:
        namespace = body["metadata"]["namespace"]
        _check(self.http.post(f"{CRD_PATH}/namespaces/{namespace}/reconciles", json=body))

    def create_many(self, bodies: list[dict[str, Any]], concurrency: int = 16) -> tuple[float, float]:
        """POST all bodies with `concurrency` requests in flight; returns (first start, last end) times.

        With aiohttp and bodies encoded beforehand: this process shares the machine with the
        operator under test, and httpx's async pool cost ~2.5 ms of CPU per request here (it tries
        to import the absent `sniffio` on every request); aiohttp ~0.25 ms.
        """
        posts = [
            (f"{CRD_PATH}/namespaces/{body['metadata']['namespace']}/reconciles", json.dumps(body).encode())
            for body in bodies
        ]

        async def run() -> tuple[float, float]:
            connector = aiohttp.TCPConnector(limit=concurrency)
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(self.url, connector=connector, timeout=timeout) as session:
                todo = iter(posts)

                async def worker() -> None:
                    for path, data in todo:  # one iterator shared by all workers: each takes the next
                        async with session.post(path, data=data, headers=JSON_HEADERS) as response:
                            answer = await response.read()
                            if response.status >= 400:
                                raise RuntimeError(f"POST {path}: {response.status} {answer[:300]!r}")

                started = time.time()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                return started, time.time()

        return asyncio.run(run())

    def list_reconciles(self, namespace: str) -> list[dict[str, Any]]:
        return list(_check(self.http.get(f"{CRD_PATH}/namespaces/{namespace}/reconciles"))["items"])


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise RuntimeError(
            f"{response.request.method} {response.request.url}: {response.status_code} {response.text[:300]}"
        )
    return response.json()


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def is_ready(obj: dict[str, Any]) -> bool:
    ready = condition(obj, "Ready")
    return ready.get("status") == "True" and ready.get("observedGeneration") == obj["metadata"].get(
        "generation"
    )


def is_stalled(obj: dict[str, Any]) -> bool:
    return condition(obj, "Stalled").get("status") == "True"


class ReadyWatch:
    """Watches a namespace's Reconciles and records when each first turns Ready (or Stalled).

    Its time is part of what P1/P5/P6/P7 measure, and it shares the machine with the operator, so
    it reads the stream with http.client in large pieces, stamps each piece when it arrives, and
    parses only events that can say Ready or Stalled is "True".
    """

    def __init__(self, kube: KubeProc, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.ready: dict[str, float] = {}
        self.stalled: dict[str, str] = {}
        self.events = 0
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ready-watch", daemon=True)
        self._connection: http.client.HTTPConnection | None = None

    def __enter__(self) -> ReadyWatch:
        self._thread.start()
        if not self._connected.wait(10):
            raise RuntimeError("could not open a watch on the Kubernetes API emulator")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        connection = self._connection
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in recv

    def _run(self) -> None:
        server = urllib.parse.urlsplit(self.kube.url)
        path = f"{CRD_PATH}/namespaces/{self.namespace}/reconciles?watch=true"
        while not self._stop.is_set():
            connection = http.client.HTTPConnection(server.hostname or "", server.port, timeout=5)
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                if response.status != 200:
                    raise RuntimeError(f"watch {path}: {response.status} {response.read(300)!r}")
                assert connection.sock is not None
                connection.sock.settimeout(None)  # a watch is quiet while nothing changes
                self._connection = connection
                self._connected.set()
                self._read(response)
            except (OSError, http.client.HTTPException, ValueError, RuntimeError):
                if self._stop.is_set():
                    return
                time.sleep(0.1)
            finally:
                connection.close()

    def _read(self, response: http.client.HTTPResponse) -> None:
        """One JSON event per line, until the server ends the stream."""
        rest = b""
        while not self._stop.is_set():
            data = response.read1(1 << 16)
            if not data:
                return
            arrived = time.time()
            *lines, rest = (rest + data).split(b"\n")
            for line in lines:
                self._see(line, arrived)

    def _see(self, line: bytes, arrived: float) -> None:
        if not line.strip():
            return
        self.events += 1
        if b"True" not in line:  # no condition is "True": neither Ready nor Stalled
            return
        obj = json.loads(line).get("object") or {}
        name = (obj.get("metadata") or {}).get("name")
        if not name:
            return
        with self._changed:
            if name not in self.ready and is_ready(obj):
                self.ready[name] = arrived
                self._changed.notify_all()
            elif name not in self.stalled and is_stalled(obj):
                self.stalled[name] = condition(obj, "Stalled").get("message", "")
                self._changed.notify_all()

    def wait_all(self, names: set[str], timeout: float) -> float:
        """Block until every name is Ready; returns the time the last one turned Ready."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not names <= set(self.ready):
                stalled = {n: m for n, m in self.stalled.items() if n in names}
                if stalled:
                    first = next(iter(stalled.items()))
                    raise RuntimeError(f"{len(stalled)} Reconcile(s) stalled, e.g. {first[0]}: {first[1]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(names - set(self.ready))
                    raise TimeoutError(
                        f"{len(missing)} of {len(names)} Reconciles not Ready after {timeout:g}s "
                        f"(e.g. {missing[:3]})"
                    )
                self._changed.wait(min(left, 1.0))
            return max(self.ready[n] for n in names)


# --- Slack -------------------------------------------------------------------------------------


class SlackProc:
    def __init__(
        self, log_dir: Path, seed: dict[str, Any], latency: float, tier_window: float | None = None
    ) -> None:
        seed_file = log_dir / "slack-seed.json"
        seed_file.write_text(json.dumps(seed))
        tiers = ["--tier-window", str(tier_window)] if tier_window else []
        self.proc = spawn(
            "slack",
            python_module(
                "bench.slack_proc", "--latency", str(latency), "--seed-file", str(seed_file), *tiers
            ),
            base_env(),
            log_dir,
            first_line=True,
        )
        self.api_url = self.proc.url
        self.http = httpx.Client(timeout=30)

    def stats(self) -> dict[str, Any]:
        return dict(self.http.post(self.api_url + "bench.stats").json())

    def reset(self) -> None:
        self.http.post(self.api_url + "bench.reset")

    def stop(self) -> None:
        self.http.close()
        self.proc.stop()


def slack_world(users: int, token: str) -> dict[str, Any]:
    return {"tokens": [token], "users": [f"user{i}@example.com" for i in range(users)]}


def slack_reconcile(
    name: str,
    namespace: str,
    api_url: str,
    users: list[str],
    secret: str = "slack-bot",  # noqa: S107 - a Secret's name
) -> dict[str, Any]:
    """One usergroup named after the Reconcile, with these users."""
    group = {"handle": name, "name": f"Bench {name}", "description": "benchmark", "users": users}
    return builders.slack_reconcile(name, namespace, api_url, [group], secret=secret)


# --- Valkey, operator, sidecar ----------------------------------------------------------------


def start_valkey(workdir: Path) -> ValkeyProcess:
    return ValkeyProcess(workdir).start()


def operator_env(
    kubeconfig: Path,
    valkey_url: str,
    workdir: Path,
    *,
    workers: int,
    metrics_port: int | None,
    log_level: str = "INFO",
    **extra: str,
) -> dict[str, str]:
    env = base_env(
        KUBECONFIG=str(kubeconfig),
        RECONCILER_VALKEY_URL=valkey_url,
        RECONCILER_MAX_WORKERS=str(workers),
        RECONCILER_LOG_LEVEL=log_level,
        RECONCILER_RUNTIME_DIR=str(workdir / "runtime"),
        RECONCILER_ALLOWED_HOSTS="127.0.0.1",  # the Slack test server; specs may target nothing else
        # The Slack server of P1-P6 enforces no tiers: a 1 ms "minute" keeps the shared budget's
        # bookkeeping (one Valkey call per Slack call) in the measurement without its waits.
        RECONCILER_SLACK_RATE_WINDOW_SECONDS="0.001",
        **extra,
    )
    if metrics_port is not None:
        env["RECONCILER_OPERATOR_METRICS_PORT"] = str(metrics_port)
    return env


def start_operator(name: str, env: dict[str, str], log_dir: Path, *, lag_samples: Path | None = None) -> Proc:
    """`reconciler run -A --standalone --liveness ...`; with `lag_samples`, via bench.operator_probe."""
    port = free_port()
    args = ["run", "-A", "--standalone", "--liveness", f"http://127.0.0.1:{port}/healthz"]
    if lag_samples is not None:
        cmd = python_module("bench.operator_probe", str(lag_samples), *args)
    else:
        cmd = [*reconciler_command(), *args]
    proc = spawn(name, cmd, env, log_dir)
    wait_http(f"http://127.0.0.1:{port}/healthz", proc, timeout=90)
    return proc


def start_sidecar(name: str, env: dict[str, str], log_dir: Path, *, module: str | None = None) -> Proc:
    """`reconciler api --port P`, or with `module` another ASGI app module run the same way."""
    port = free_port()
    if module is None:
        cmd = [*reconciler_command(), "api", "--port", str(port)]
    else:
        cmd = python_module(module, "--port", str(port))
    proc = spawn(name, cmd, env, log_dir)
    proc.url = f"http://127.0.0.1:{port}"
    wait_http(f"{proc.url}/healthz", proc)
    return proc


@contextlib.contextmanager
def stopping(*stoppers: Callable[[], None]) -> Iterator[None]:
    try:
        yield
    finally:
        for stop in reversed(stoppers):
            with contextlib.suppress(Exception):
                stop()


def rss_mb(pid: int) -> float:
    import psutil

    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total / 2**20


def scrape(url: str) -> str:
    return httpx.get(url, timeout=10).text
