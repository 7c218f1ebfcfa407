"""`python -m bench [--quick] [--only P1,P3] [--repeat N]`: run the benchmarks, print the table, write
bench/results/latest.json and docs/benchmarks.md (with --quick: bench/results/quick.json/.md)."""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType

from bench.common import REPO_ROOT, Config, ScenarioResult, machine_info, now_iso
from bench.profiling import Profiler, py_spy
from bench.report import print_table, relative, write_json, write_markdown

SCENARIOS: dict[str, str] = {
    "P1": "bench.p1_loop_lag",
    "P2": "bench.p2_call_counts",
    "P3": "bench.p3_long_poll",
    "P4": "bench.p4_many_clients",
    "P5": "bench.p5_convergence",
    "P6": "bench.p6_memory",
    "P7": "bench.p7_fleet",
    "V1": "bench.v1_valkey",
}
RESULTS_DIR = REPO_ROOT / "bench" / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a CI smoke run (< 90 s)")
    parser.add_argument("--only", default="", help="comma-separated scenario ids, e.g. P1,P3")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="repetitions per scenario (default: each scenario's own, 1 with --quick)",
    )
    parser.add_argument("--json", type=Path, default=None, help="where to write the JSON results")
    parser.add_argument("--markdown", type=Path, default=None, help="where to write the Markdown report")
    parser.add_argument(
        "--no-profile",
        action="store_true",
        help="do not re-run a scenario under py-spy when it misses a target",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (process logs)")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: rewrite the Markdown report (and print the table) from the JSON",
    )
    parser.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    return parser.parse_args(argv)


def raise_fd_limit(wanted: int = 65536) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))  # inherited by the processes we start


def load(ids: list[str]) -> dict[str, ModuleType]:
    return {sid: importlib.import_module(SCENARIOS[sid]) for sid in ids}


def run_one(sid: str, module: ModuleType, cfg: Config) -> ScenarioResult:
    started = time.monotonic()
    try:
        result: ScenarioResult = module.run(cfg)
    except Exception:
        result = ScenarioResult(
            sid, (module.__doc__ or sid).strip().splitlines()[0], error=traceback.format_exc()
        )
    result.seconds = time.monotonic() - started
    result.measured_at = now_iso()
    for metric in result.metrics:
        if metric.passed is None and metric.target is not None:
            metric.judge()
    if result.missed and cfg.profile and not result.error:
        profile_run(sid, module, cfg, result)
    return result


def profile_run(sid: str, module: ModuleType, cfg: Config, result: ScenarioResult) -> None:
    """Re-run once under py-spy and attach the top frames (the measured numbers stay the clean ones)."""
    if py_spy() is None:
        result.notes.append("missed a target; py-spy is not installed, so no profile (pip install py-spy)")
        return
    cfg.log(f"[{sid}] missed {', '.join(m.name for m in result.missed)}: re-running once under py-spy")
    profiler = Profiler(RESULTS_DIR / "profiles" / ("quick" if cfg.quick else "full") / sid.lower())
    profiled_cfg = Config(
        quick=cfg.quick, repeat=1, workdir=cfg.workdir / f"{sid.lower()}-profiled", profile=False, log=cfg.log
    )
    try:
        rerun: ScenarioResult = module.run(profiled_cfg, profiler=profiler)
        rerun_values = "; ".join(f"{m.name}: {m.result:.4g} {m.unit}" for m in rerun.metrics)
    except Exception as exc:
        rerun_values = f"the profiled re-run failed: {exc!r}"
    finally:
        profiler.stop()
    result.profile = {
        "why": "missed "
        + ", ".join(m.name for m in result.missed)
        + f". Under the profiler: {rerun_values}.",
        "summaries": profiler.summaries(),
        "memory": profiler.extras,
    }


def merge_previous(path: Path, results: list[ScenarioResult]) -> list[ScenarioResult]:
    """Keep the last results of scenarios not run this time (`--only`), in scenario order."""
    fresh = {r.id: r for r in results}
    if path.exists():
        try:
            previous = json.loads(path.read_text()).get("scenarios", {})
        except (OSError, ValueError):
            previous = {}
        for sid, data in previous.items():
            if sid not in fresh and sid in SCENARIOS:
                try:
                    fresh[sid] = ScenarioResult.from_json(data)
                except TypeError:
                    continue
    return [fresh[sid] for sid in SCENARIOS if sid in fresh]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ids = [s.strip().upper() for s in args.only.split(",") if s.strip()] or list(SCENARIOS)
    unknown = [s for s in ids if s not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 64
    raise_fd_limit()
    json_path = args.json or RESULTS_DIR / ("quick.json" if args.quick else "latest.json")
    md_path = args.markdown or (
        RESULTS_DIR / "quick.md" if args.quick else REPO_ROOT / "docs" / "benchmarks.md"
    )
    if args.report_only:
        payload = json.loads(json_path.read_text())
        saved = [
            ScenarioResult.from_json(payload["scenarios"][sid])
            for sid in SCENARIOS
            if sid in payload["scenarios"]
        ]
        payload["methods"] = {r.id: importlib.import_module(SCENARIOS[r.id]).__doc__ or "" for r in saved}
        write_markdown(md_path, payload, saved)
        print_table(saved)
        print(f"rewrote {relative(md_path)} from {relative(json_path)}")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    cfg = Config(
        quick=args.quick,
        repeat=args.repeat,
        workdir=workdir,
        profile=not args.no_profile and not args.quick,
        log=lambda text: print(text, file=sys.stderr, flush=True),
    )
    modules = load(ids)
    command = "python -m bench" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    started = time.monotonic()
    results: list[ScenarioResult] = []
    for sid, module in modules.items():
        cfg.log(f"[{sid}] {(module.__doc__ or '').strip().splitlines()[0]}")
        result = run_one(sid, module, cfg)
        verdict = "ERROR" if result.error else ("MISS" if result.missed else "ok")
        cfg.log(f"[{sid}] {verdict} in {result.seconds:.1f} s")
        results.append(result)

    merged = results if args.quick else merge_previous(json_path, results)
    payload = {
        "generated_at": now_iso(),
        "command": command.strip(),
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "machine": machine_info(),
        "methods": {
            sid: (importlib.import_module(SCENARIOS[sid]).__doc__ or "") for sid in [r.id for r in merged]
        },
        "scenarios": {r.id: r.to_json() for r in merged},
    }
    write_json(json_path, payload)
    write_markdown(md_path, payload, merged)
    print_table(merged)
    print(f"wrote {relative(json_path)} and {relative(md_path)} in {payload['seconds']:.0f} s")
    errors = [r for r in results if r.error]
    if args.keep or errors:
        print(f"process logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if errors:
        return 1
    if args.strict and any(r.missed for r in results):
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
