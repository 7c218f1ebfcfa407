"""V1: Valkey memory and commands per run: 1,000 Reconciles at a 10-minute interval for a week.

Memory: a real valkey-server and the real TaskStore. Each simulated run saves its record as the
operator does (first save running, which files it in the history and trims; then finished), with
two actions and one failed run in 50. A week at a 10-minute interval is 1,008 runs per Reconcile;
time does not pass (no TTL expires), which is the worst case: every record written within the TTL
would still be there unless trimming deletes it. `used_memory` and `DBSIZE` are read after the
history fills (20 runs), after a day and after the week: steady state means they stop growing.
Baseline, same run: the same records written the pre-#11 way (a record lives its whole TTL; only its
id leaves the history), measured on a sample of Reconciles and scaled to all of them.

Commands: `RunExecutor.execute` (the operator's run, without Kubernetes) against the Slack test server,
counted with INFO commandstats (commands inside scripts included) and as round trips.
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import valkey
from pydantic import SecretStr

from bench.common import Config, Metric, ScenarioResult
from reconciler.cache import ValkeyCache
from reconciler.models.base import ActionRecord
from reconciler.models.spec import SecretRef
from reconciler.models.task import ReconcileRef, TaskError, TaskRecord, TaskStatus, new_task_id, utcnow
from reconciler.settings import Settings
from reconciler.tasks import TaskStore, history_key, task_key
from reconciler_operator.executor import RunExecutor, RunRequest
from reconciler_testing.slack import SlackTestServer
from tests.valkey_server import ValkeyProcess

WEEK_RUNS = 7 * 24 * 6
TTL = 7 * 24 * 3600
HISTORY = 20
TARGET_MB = 64.0
"""1,000 Reconciles must fit well inside the chart's maxmemory (160mb)."""
TARGET_COMMANDS = 20.0
BEFORE_COMMANDS = 36.0
"""Commands per run before #11 (commit 7b9c3b9), measured with this scenario's method."""
BEFORE_ROUND_TRIPS = 14.0
TOKEN = "xoxb-bench_v1_token"  # fake; underscores keep it from looking like a real token


def _record(ref: ReconcileRef, run: int) -> TaskRecord:
    failed = run % 50 == 49
    return TaskRecord(
        task_id=new_task_id(),
        reconcile=ref,
        integration="slack-usergroups",
        trigger="interval",
        status=TaskStatus.RUNNING,
        started_at=utcnow(),
        actions=[
            ActionRecord(type="add_users", target="sre-oncall", detail="alice@example.com, bob@example.com"),
            ActionRecord(type="remove_users", target="sre-leads", detail="carol@example.com"),
        ],
        errors=[TaskError(reason="SlackUnavailable", message="Slack answered HTTP 503")] if failed else [],
    )


def _run_new(store: TaskStore, ref: ReconcileRef, run: int) -> None:
    record = _record(ref, run)
    store.save(record)
    record.status = TaskStatus.FAILED if record.errors else TaskStatus.SUCCESS
    record.finished_at = utcnow()
    store.save_or_defer(record)


def _run_old(store: TaskStore, ref: ReconcileRef, run: int) -> None:
    """Before #11: SET with the TTL, the id pushed and trimmed; the record itself stays until its TTL."""
    record = _record(ref, run)
    record.status = TaskStatus.FAILED if record.errors else TaskStatus.SUCCESS
    client = store.cache.client  # type: ignore[attr-defined]
    client.set(task_key(record.task_id), record.model_dump_json(), ex=TTL)
    key = history_key(ref.namespace, ref.name)
    with client.pipeline(transaction=True) as pipe:
        pipe.lrem(key, 0, record.task_id)
        pipe.lpush(key, record.task_id)
        pipe.ltrim(key, 0, HISTORY - 1)
        pipe.expire(key, TTL)
        pipe.execute()


def _usage(client: Any) -> tuple[float, int]:
    return float(client.info("memory")["used_memory"]), int(client.dbsize())


def _simulate(
    workdir: Path, reconciles: int, runs: int, old: bool, checkpoints: tuple[int, ...]
) -> dict[int, tuple[float, int]]:
    """Run every Reconcile `runs` times on a fresh valkey-server (a FLUSHALL frees memory lazily, so
    a reused one would skew the next reading); (used bytes over empty, keys) at each checkpoint."""
    server = ValkeyProcess(workdir).start()
    try:
        return _simulate_on(server, reconciles, runs, old, checkpoints)
    finally:
        server.stop()


def _simulate_on(
    server: ValkeyProcess, reconciles: int, runs: int, old: bool, checkpoints: tuple[int, ...]
) -> dict[int, tuple[float, int]]:
    client = server.client()
    empty, _ = _usage(client)
    store = TaskStore(ValkeyCache.from_url(server.url, timeout=30), ttl_seconds=TTL, history_size=HISTORY)
    refs = [ReconcileRef(namespace=f"team-{i % 50}", name=f"rec-{i}") for i in range(reconciles)]
    step = _run_old if old else _run_new
    seen: dict[int, tuple[float, int]] = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        for run in range(runs):
            chunks = [refs[i::8] for i in range(8)]
            for chunk_done in pool.map(
                lambda chunk, run=run: [step(store, ref, run) for ref in chunk], chunks
            ):
                del chunk_done
            if run + 1 in checkpoints:
                used, keys = _usage(client)
                seen[run + 1] = (used - empty, keys)
    return seen


class CountingValkey(valkey.Valkey):
    """Counts the commands the client sends: one per round trip (a script call is one)."""

    sent = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        CountingValkey.sent += 1
        return super().execute_command(*args, **options)


def _commands_per_run(valkey_server: ValkeyProcess, runs: int) -> tuple[float, float]:
    """(commands Valkey executed, round trips) per `RunExecutor.execute` of a Reconcile with nothing to do."""

    class Tokens:
        def read_token(self, namespace: str, ref: SecretRef) -> SecretStr:
            return SecretStr(TOKEN)

    admin = valkey_server.client()
    with SlackTestServer() as slack:
        slack.add_token(TOKEN)
        slack.add_user("alice@example.com")
        # The task record's commands only: the fleet's shared reads and rate budget (#9) are off here.
        settings = Settings(valkey_url=valkey_server.url, allowed_hosts="127.0.0.1", shared_cache=False)
        client = CountingValkey.from_url(valkey_server.url, decode_responses=True, socket_timeout=10)
        store = TaskStore(ValkeyCache(client), ttl_seconds=TTL, history_size=HISTORY)
        runner = RunExecutor(settings, store, Tokens())
        spec: dict[str, Any] = {
            "integration": "slack-usergroups",
            "interval": "10m",
            "credentials": {"secretRef": {"name": "s"}},
            "slackUsergroups": {
                "apiUrl": slack.api_url,
                "usergroups": [{"handle": "oncall", "name": "On-call", "users": ["alice@example.com"]}],
            },
        }
        ref = ReconcileRef(namespace="bench", name="v1")
        runner.execute(RunRequest(ref, spec, "create", new_task_id()))  # creates the group
        admin.config_resetstat()
        CountingValkey.sent = 0
        for _ in range(runs):
            report = runner.execute(RunRequest(ref, spec, "interval", new_task_id()))
            if report.error is not None:
                raise RuntimeError(f"run failed: {report.error}")
        sent = CountingValkey.sent
        stats = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in admin.info("commandstats").items()}
    for own in ("config|resetstat", "info", "client|setinfo", "script|load"):
        stats.pop(own, None)
    return sum(stats.values()) / runs, sent / runs


def run(cfg: Config) -> ScenarioResult:
    reconciles = 100 if cfg.quick else 1000
    runs = 60 if cfg.quick else WEEK_RUNS
    sample = 10 if cfg.quick else 20
    old_runs = 60 if cfg.quick else WEEK_RUNS
    checkpoints = tuple(sorted({HISTORY, min(runs, 144), runs}))
    result = ScenarioResult(
        "V1",
        f"Valkey memory: {reconciles} Reconciles, 10-minute interval, {runs} runs each (a week)",
        params={"reconciles": reconciles, "runs_each": runs, "history_size": HISTORY, "ttl_s": TTL},
    )
    with tempfile.TemporaryDirectory(dir=cfg.workdir) as tmp:
        started = time.monotonic()
        new = _simulate(Path(tmp) / "new", reconciles, runs, old=False, checkpoints=checkpoints)
        seconds = time.monotonic() - started
        old = _simulate(Path(tmp) / "old", sample, old_runs, old=True, checkpoints=(old_runs,))
        server = ValkeyProcess(Path(tmp) / "commands").start()
        try:
            commands, round_trips = _commands_per_run(server, 30 if cfg.quick else 200)
        finally:
            server.stop()
    used, keys = new[runs]
    old_used, old_keys = old[old_runs]
    old_scaled = old_used / sample * reconciles * (WEEK_RUNS / old_runs)
    mb = 1024 * 1024
    result.metrics.append(
        Metric(
            name=f"Valkey memory after a week of runs ({reconciles} Reconciles)",
            unit="MB",
            result=used / mb,
            target=TARGET_MB,
            baseline=old_scaled / mb,
            ratio=old_scaled / used if used else None,
            ratio_label="x less than before",
            target_label=f"<= {TARGET_MB:g} MB",
            note=(
                "used_memory over an empty server after "
                + ", ".join(f"{n} runs: {u / mb:.1f} MB / {k} keys" for n, (u, k) in sorted(new.items()))
                + f"; {keys / reconciles:.1f} keys and {used / reconciles / 1024:.1f} KB per Reconcile. "
                f"Before: {old_used / sample / 1024:.0f} KB per Reconcile after {old_runs} runs "
                f"({old_keys / sample:.0f} keys), measured on {sample} and scaled to {reconciles}"
                + (" and a week" if old_runs != WEEK_RUNS else "")
                + f". {reconciles * runs * 2 / seconds:.0f} saves/s."
            ),
        ).judge()
    )
    result.metrics.append(
        Metric(
            name="Valkey commands per run (nothing to change)",
            unit="",
            result=commands,
            target=TARGET_COMMANDS,
            baseline=BEFORE_COMMANDS,
            ratio=BEFORE_COMMANDS / commands if commands else None,
            ratio_label="x fewer",
            target_label=f"<= {TARGET_COMMANDS:g}",
            note=(
                f"INFO commandstats, commands inside scripts included; about {round_trips:.0f} round "
                f"trips (before: {BEFORE_ROUND_TRIPS:.0f}). The baseline was measured the same way on "
                "commit 7b9c3b9 (pre-#11), not in this run."
            ),
        ).judge()
    )
    return result
