"""`reconciler COMMAND --help`, as the console script prints it: plain value names (NAMESPACE,
table|json), no Typer type labels like `<list[str]>` or `<bool>`; `run` and `status` say what they do."""

from __future__ import annotations

import functools
import subprocess

import pytest

from tests.cli.conftest import reconciler_executable

COMMANDS = ["run", "api", "plan", "apply", "status", "valkey-stop"]


@functools.cache  # `run` and `status` are read by two tests each: one process per command
def help_text(*args: str) -> str:
    env = {"COLUMNS": "200", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [reconciler_executable(), *args, "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_option_types_render_plainly(command: str) -> None:
    text = help_text(command)
    for line in text.splitlines():
        if "--help" in line:
            continue  # Typer adds the help flag itself
        assert "<str>" not in line and "<bool>" not in line and "<list[" not in line, line
        assert "<int>" not in line and "<float>" not in line, line


def test_run_says_no_flag_means_all_namespaces() -> None:
    assert "all namespaces" in help_text("run")


def test_status_verbose_says_what_it_logs() -> None:
    verbose = next(line for line in help_text("status").splitlines() if "--verbose" in line)
    assert "sidecar" in verbose and "Slack" not in verbose
