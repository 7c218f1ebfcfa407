"""Smoke test of the benchmark harness: `python -m bench --quick --only P2,P3,V1` runs end to end and
writes a well-formed table, JSON and Markdown. No timing assertions: CI machines vary."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
METRIC_KEYS = {
    "name",
    "unit",
    "result",
    "target",
    "better",
    "baseline",
    "ratio",
    "target_label",
    "dist",
    "per_repeat",
    "note",
    "passed",
    "miss_by",
}


@pytest.fixture(scope="module")
def quick_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    out = tmp_path_factory.mktemp("bench")
    json_path, md_path = out / "quick.json", out / "quick.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "P2,P3,V1",
            "--json",
            str(json_path),
            "--markdown",
            str(md_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc, json_path, md_path


def test_runs_without_errors(quick_run: tuple[subprocess.CompletedProcess[str], Path, Path]) -> None:
    proc, _, _ = quick_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_prints_the_table(quick_run: tuple[subprocess.CompletedProcess[str], Path, Path]) -> None:
    proc, _, _ = quick_run
    out = proc.stdout
    for header in ("Scenario", "Metric", "Baseline", "Result", "Ratio", "Target", "Verdict"):
        assert header in out
    assert "P2" in out and "P3" in out
    assert "ERROR" not in out


def test_json_is_well_formed(quick_run: tuple[subprocess.CompletedProcess[str], Path, Path]) -> None:
    _, json_path, _ = quick_run
    data = json.loads(json_path.read_text())
    assert data["quick"] is True
    assert {"nproc", "python"} <= set(data["machine"])
    assert set(data["scenarios"]) == {"P2", "P3", "V1"}
    v1 = {m["name"].split(" (")[0]: m for m in data["scenarios"]["V1"]["metrics"]}
    memory = v1["Valkey memory after a week of runs"]
    assert memory["result"] > 0 and memory["baseline"] > memory["result"]  # trimmed records are deleted
    assert 0 < v1["Valkey commands per run"]["result"] < v1["Valkey commands per run"]["baseline"]
    for sid, scenario in data["scenarios"].items():
        assert scenario["id"] == sid and scenario["error"] is None
        assert scenario["metrics"], sid
        for metric in scenario["metrics"]:
            assert set(metric) >= METRIC_KEYS, metric
            assert isinstance(metric["result"], int | float) and not math.isnan(metric["result"])
            assert metric["passed"] in (True, False, None)
    p2 = {m["name"]: m for m in data["scenarios"]["P2"]["metrics"]}
    writes = [m for name, m in p2.items() if "writes" in name]
    assert len(writes) == 2 and all(m["result"] == 3 for m in writes)  # 3 changes -> 3 writes
    p3 = data["scenarios"]["P3"]["metrics"][0]
    assert p3["dist"]["n"] == 20 and p3["baseline"] > 0 and p3["result"] > 0


def test_markdown_is_written(quick_run: tuple[subprocess.CompletedProcess[str], Path, Path]) -> None:
    _, _, md_path = quick_run
    text = md_path.read_text()
    assert text.startswith("# Benchmarks")
    assert "| Scenario | Metric |" in text and "### P2" in text and "### P3" in text


def test_figures_are_written_and_embedded(
    quick_run: tuple[subprocess.CompletedProcess[str], Path, Path],
) -> None:
    _, json_path, md_path = quick_run
    png = md_path.parent / md_path.stem / "p3-long-poll.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        f"![P3: Long-poll latency against the 0.5 s polling baseline]({md_path.stem}/p3-long-poll.png)"
        in (md_path.read_text())
    )
    series = json.loads(json_path.read_text())["scenarios"]["P3"]["series"]
    assert len(series["latencies_ms"]) == 20 and len(series["baseline_latencies_ms"]) == 20


def test_report_only_redraws_from_the_json(
    quick_run: tuple[subprocess.CompletedProcess[str], Path, Path], tmp_path: Path
) -> None:
    _, json_path, _ = quick_run
    md_path = tmp_path / "again.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--report-only",
            "--json",
            str(json_path),
            "--markdown",
            str(md_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "again" / "p3-long-poll.png").stat().st_size > 10_000
    assert "![P3:" in md_path.read_text()
