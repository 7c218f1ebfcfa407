"""The CLI is also a kubectl plugin: `kubectl reconciler plan -f x.yaml` (kubectl finds
`kubectl-reconciler` on PATH, as the package installs it next to `reconciler`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reconciler_testing.slack import SlackTestServer
from tests import builders

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


def kubectl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        [KUBECTL, *args],
        env={**os.environ, **(env or {}), "PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_kubectl_finds_the_plugin() -> None:
    listed = kubectl("plugin", "list")
    assert "kubectl-reconciler" in listed.stdout
    helped = kubectl("reconciler", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "Usage: kubectl reconciler" in helped.stdout
    for command in ("plan", "apply", "status", "doctor"):
        assert command in helped.stdout


def test_kubectl_reconciler_plan(tmp_path: Path) -> None:
    with SlackTestServer() as slack:
        slack.add_token("xoxb-plugin-token-1234567890")
        slack.add_user("alice@example.com")
        manifest = tmp_path / "x.yaml"
        group = [{"handle": "oncall", "name": "On-call", "users": ["alice@example.com"]}]
        manifest.write_text(yaml.safe_dump(builders.slack_reconcile("x", "team", slack.api_url, group)))
        done = kubectl(
            "reconciler",
            "plan",
            "-f",
            str(manifest),
            "-o",
            "json",
            env={"RECONCILER_TOKEN": "xoxb-plugin-token-1234567890"},
        )
    assert done.returncode == 2, done.stderr  # changes planned
    assert '"create_usergroup"' in done.stdout
