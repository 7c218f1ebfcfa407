"""Fixtures for the command-line tests: the Slack and GitLab test servers, manifests on disk, the
Typer app through `CliRunner`, and a real `reconciler api` sidecar on the session's valkey-server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner, Result

from reconciler.cache import ValkeyCache
from reconciler.cli.app import app
from reconciler.tasks import TaskStore
from reconciler_testing.gitlab import OWNER, GitLabTestServer
from reconciler_testing.slack import SlackTestServer
from tests import builders
from tests.valkey_server import ValkeyProcess, free_port

SLACK_TOKEN = "xoxb-cli-test-token-0123456789"
GITLAB_TOKEN = "glpat-cli-test-token-ABCDEFGH"
API_TOKEN = "sidecar-api-token-5e5e5e5e5e"
NS = "team-sre"


# --- the command line ---


@pytest.fixture(autouse=True)
def cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RECONCILER_* from the outside; fast failures; the Slack token in the default variable."""
    for name in list(os.environ):
        if name.startswith("RECONCILER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RECONCILER_TOKEN", SLACK_TOKEN)
    monkeypatch.setenv("RECONCILER_HTTP_TIMEOUT_SECONDS", "5")
    monkeypatch.setenv("RECONCILER_TRANSIENT_RETRIES", "0")
    monkeypatch.setenv("RECONCILER_RATE_LIMIT_RETRIES", "1")


CliRun = Callable[..., Result]


@pytest.fixture
def cli() -> CliRun:
    """`cli("plan", "-f", path, input=...)`: the Typer app in-process; stdout and stderr apart."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return invoke


def reconciler_executable() -> str:
    exe = shutil.which("reconciler", path=str(Path(sys.executable).parent))
    assert exe, "the `reconciler` console script is not installed next to the interpreter"
    return exe


# --- manifests ---


def slack_reconcile(
    name: str, api_url: str, usergroups: list[dict[str, Any]], *, namespace: str = NS, **spec: Any
) -> dict[str, Any]:
    return builders.slack_reconcile(name, namespace, api_url, usergroups, **spec)


def gitlab_reconcile(
    name: str, url: str, groups: list[dict[str, Any]], *, namespace: str = NS
) -> dict[str, Any]:
    return builders.gitlab_reconcile(name, namespace, url, groups)


def secret(name: str, *, namespace: str | None = NS, **fields: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque", **fields}


WriteManifests = Callable[..., Path]


@pytest.fixture
def write_manifests(tmp_path: Path) -> WriteManifests:
    """`write_manifests(doc, doc, ..., name="x.yaml")`: one multi-document YAML file."""

    def write(*docs: dict[str, Any], name: str = "manifests.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
        return path

    return write


# --- Slack and GitLab ---


@pytest.fixture
def slack() -> Iterator[SlackTestServer]:
    """A fresh Slack: the bot token, three people and two channels."""
    with SlackTestServer() as server:
        server.add_token(SLACK_TOKEN)
        for email in ("alice@example.com", "bob@example.com", "carol@example.com"):
            server.add_user(email)
        server.add_channel("sre")
        server.add_channel("incidents")
        yield server


@pytest.fixture
def gitlab() -> Iterator[GitLabTestServer]:
    """A fresh GitLab: the bot (owner of acme/platform) and three people."""
    with GitLabTestServer() as server:
        server.add_user("reconciler-bot")
        for username in ("alice", "bob", "carol"):
            server.add_user(username)
        server.add_token(GITLAB_TOKEN, username="reconciler-bot")
        server.add_group("acme/platform")
        server.add_member("group", "acme/platform", "reconciler-bot", OWNER)
        yield server


# --- the sidecar ---


@dataclass
class Sidecar:
    url: str
    store: TaskStore


@pytest.fixture(scope="module")
def sidecar(valkey_server: ValkeyProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """`reconciler api` as a subprocess on the session's valkey-server, requiring API_TOKEN."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("sidecar") / "api.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env.update(
        {
            "RECONCILER_VALKEY_URL": valkey_server.url,
            "RECONCILER_API_TOKEN": API_TOKEN,
            "PYTHONUNBUFFERED": "1",
        }
    )
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [reconciler_executable(), "api", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log_path)
        cache = ValkeyCache.from_url(valkey_server.url)
        yield Sidecar(url, TaskStore(cache, ttl_seconds=600, history_size=20))
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"reconciler api exited:\n{log_path.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"reconciler api did not get ready:\n{log_path.read_text(errors='replace')[-3000:]}")
