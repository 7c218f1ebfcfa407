"""Smoke test of bench P7 "fleet": `python -m bench --quick --only P7` runs both modes (shared
cache and budget on and off) end to end. Call counts are asserted, never timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BENCH = [sys.executable, "-m", "bench", "--quick", "--only", "P7"]


def test_p7_quick_runs_and_the_fleet_shares_its_reads(tmp_path: Path) -> None:
    json_path, md_path = tmp_path / "quick.json", tmp_path / "quick.md"
    proc = subprocess.run(
        [*BENCH, "--json", str(json_path), "--markdown", str(md_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    scenario = json.loads(json_path.read_text())["scenarios"]["P7"]
    assert scenario["error"] is None
    metrics = {m["name"]: m for m in scenario["metrics"]}
    rerun = next(m for name, m in metrics.items() if name.startswith("phase 2: nothing changed"))
    # With the cache, re-running every Reconcile with nothing to change costs the fleet a few reads
    # of the user groups; without it, every run reads everything itself.
    assert rerun["result"] <= 5 < rerun["baseline"]
    limited = next(m for name, m in metrics.items() if name.startswith("phase 2: HTTP 429"))
    assert limited["result"] == 0
    # GitLab: a no-change re-run of the fleet lists each group once (the floor) and shares the
    # token's user instead of one GET /user per run; no 429 with the budget on.
    gitlab = next(m for name, m in metrics.items() if name.startswith("GitLab phase 2: nothing changed"))
    assert gitlab["result"] <= gitlab["target"] and gitlab["result"] < gitlab["baseline"]
    gitlab_limited = next(m for name, m in metrics.items() if name.startswith("GitLab phase 2: HTTP 429"))
    assert gitlab_limited["result"] == 0
    assert "### P7" in md_path.read_text()
    # The fleet timeline figure: Ready over time, on and off, against the tier lower bound.
    timelines = scenario["series"]["ready_timelines"]
    assert [len(t["ready_after_s"]) for t in timelines] == [scenario["params"]["reconciles"]] * 2
    png = tmp_path / "quick" / "p7-fleet-timeline.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "(quick/p7-fleet-timeline.png)" in md_path.read_text()
