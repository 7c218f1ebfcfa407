"""`make demo` and the README's "Try it without a cluster" section, run for real: every shell block of
that section, each demo step's exit code, and nothing left running afterwards (also after Ctrl-C)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
SECTION = "## Try it without a cluster"
STEP_LINE = re.compile(r"\[demo\] step (\d)/4: exit (\d+) \(expected (\d+):")


def readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(title + "\n")
    end = text.find("\n## ", start + len(title))
    return text[start : end if end >= 0 else len(text)]


def shell_blocks(section: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def demo_valkeys() -> list[psutil.Process]:
    """valkey-servers working in a demo's directory (the embedded Valkey chdirs into its runtime dir)."""
    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            if "valkey" in (proc.info["name"] or "") and "reconciler-demo-" in proc.cwd():
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["VENV"] = sys.prefix  # the Makefile's venv: this interpreter's, already installed
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_every_shell_block_of_the_without_a_cluster_section_runs() -> None:
    blocks = shell_blocks(readme_section(SECTION))
    assert any("make demo" in block for block in blocks), "the section must show `make demo`"
    for block in blocks:
        script = block.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=REPO,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, f"{block!r} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        if "make demo" in block:
            steps = [tuple(map(int, m.groups())) for m in STEP_LINE.finditer(done.stdout)]
            assert [(n, got) for n, got, _ in steps] == [(1, 2), (2, 0), (3, 0), (4, 0)], done.stdout
            assert all(got == expected for _, got, expected in steps)
            assert "$ reconciler plan -f reconciles.yaml" in done.stdout  # each command shown first
            assert "done: every step ended as expected" in done.stdout
    assert demo_valkeys() == []


def test_the_demo_stops_everything_it_started_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler_testing.demo"],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if "status sidecar at" in line:
                break
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "the sidecar should be running"
        assert demo_valkeys(), "the demo's embedded Valkey should be running"
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, rest
    assert "interrupted" in rest
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert demo_valkeys() == []
