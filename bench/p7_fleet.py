"""P7 "fleet": many Reconciles on one Slack workspace that enforces Slack's tiers (429 +
Retry-After) over a shortened window, with the shared cache and budget on vs off, same run.

Setup per mode: Kubernetes API emulator, Valkey, the Slack test server enforcing the tiers over
WINDOW seconds (Slack's minute shortened 10x; Tier 2 = 20 calls per window and method), a
4,000-user workspace, and N Reconciles of two user groups each: one new, one that exists with
drifted members. `reconciler run -A` with 8 workers.
- Phase 1, all applied at once: time from the first create to all Ready, as a ratio to the tier
  lower bound: the busiest method's calls that any implementation must make
  (`usergroups.users.update`, one per group) / its limit x WINDOW.
- Phase 2, nothing changed, every Reconcile asked to run again (`requested-at` on all of them at
  once, 16 PATCHes in flight, as a GitOps sync does):
  total Slack calls for the whole fleet and 429 answers. Each run must use a user-group read that
  started after its own request; the requests reach the operator spread over a few hundred ms.
  Without gathering, every request arriving after the previous read started needed one more
  `usergroups.list` (1 to 6 per phase 2, depending on the machine's load); with the default
  `RECONCILER_SHARED_READ_COALESCE_SECONDS` (0.5 s) the first read starts 0.5 s after the first
  request and serves every run asked for until then. The directory (swept in phase 1), the team
  id (`auth.test`, cached per token hash) and the channels (no spec names any) need no call.
- The shared directory's Valkey memory for a 50,000-user workspace (a sweep into a fresh Valkey).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import valkey
from pydantic import SecretStr

from bench import p7_gitlab
from bench.common import Config, Metric, ScenarioResult, phase2_metrics
from bench.procs import (
    CRD_PATH,
    KubeProc,
    ReadyWatch,
    SlackProc,
    operator_env,
    start_operator,
    start_valkey,
)
from reconciler.fleet import Fleet
from reconciler.integrations.slack_usergroups.client import SlackClient
from reconciler.integrations.slack_usergroups.shared import SlackWorkspaceCache
from reconciler.settings import Settings
from reconciler_testing.slack import SlackTestServer
from tests import builders

NAMESPACE = "fleet"
TOKEN = "xoxb-bench_fleet_token"
TIER_2 = 20
USERS_PER_GROUP = 10
PHASE1_TARGET = 1.5
OFF_TIMEOUT = 240.0
"""How long the cache-off baseline gets to converge (it may livelock; the cache-on fleet takes ~15 s)."""
PHASE2_CALLS_TARGET = 5


def _seed(users: int, count: int) -> dict[str, Any]:
    emails = [f"user{i}@example.com" for i in range(users)]
    drifted = [
        {"handle": f"fleet-{i}-b", "name": f"Fleet {i} b", "users": emails[i * 7 : i * 7 + 4]}
        for i in range(count)
    ]
    return {"tokens": [TOKEN], "users": emails, "usergroups": drifted}


def _bodies(api_url: str, users: int, count: int) -> list[dict[str, Any]]:
    bodies = []
    for i in range(count):
        first = (i * 37) % (users - 2 * USERS_PER_GROUP)
        emails = [f"user{j}@example.com" for j in range(first, first + 2 * USERS_PER_GROUP)]
        groups = [
            {"handle": f"fleet-{i}-a", "name": f"Fleet {i} a", "users": emails[:USERS_PER_GROUP]},
            {"handle": f"fleet-{i}-b", "name": f"Fleet {i} b", "users": emails[USERS_PER_GROUP:]},
        ]
        bodies.append(builders.slack_reconcile(f"fleet-{i}", NAMESPACE, api_url, groups))
    return bodies


def _request_all(kube: KubeProc, names: list[str], value: str) -> None:
    """Annotate every Reconcile at once (16 PATCHes in flight), as a GitOps sync would."""
    patch = {"metadata": {"annotations": {"reconciler.dev/requested-at": value}}}

    async def send() -> None:
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(base_url=kube.url, timeout=30, limits=limits) as http:

            async def one(name: str) -> None:
                response = await http.patch(
                    f"{CRD_PATH}/namespaces/{NAMESPACE}/reconciles/{name}",
                    json=patch,
                    headers={"Content-Type": "application/merge-patch+json"},
                )
                response.raise_for_status()

            await asyncio.gather(*(one(name) for name in names))

    asyncio.run(send())


def _wait_handled(kube: KubeProc, names: set[str], value: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = {
            str(o["metadata"]["name"])
            for o in kube.list_reconciles(NAMESPACE)
            if (o.get("status") or {}).get("lastHandledRequestedAt") == value
            and not any(
                c.get("type") == "Reconciling" and c.get("status") == "True"
                for c in (o.get("status") or {}).get("conditions") or []
            )
        }
        if names <= done:
            return time.time()
        time.sleep(0.2)
    # The cache-off baseline may never get there (rate limited over and over): report, not fail.
    return math.inf


def run_mode(cfg: Config, *, shared: bool, users: int, count: int, window: float) -> dict[str, Any]:
    workdir = cfg.subdir(f"p7-{'on' if shared else 'off'}")
    kube = valkey_proc = slack = operator = None
    try:
        kube = KubeProc(workdir, [NAMESPACE])
        valkey_proc = start_valkey(workdir / "valkey")
        slack = SlackProc(workdir, _seed(users, count), latency=0.02, tier_window=window)
        kube.create_secret(NAMESPACE, "slack-bot", {"token": TOKEN})
        env = operator_env(
            kube.write_kubeconfig(workdir / "kubeconfig"),
            valkey_proc.url,
            workdir,
            workers=8,
            metrics_port=None,
        )
        env["RECONCILER_SLACK_RATE_WINDOW_SECONDS"] = str(window)
        env["RECONCILER_SHARED_CACHE"] = "true" if shared else "false"
        env["RECONCILER_BACKOFF_BASE_SECONDS"] = "1"
        env["RECONCILER_BACKOFF_MAX_SECONDS"] = str(window * 2)
        operator = start_operator("operator", env, workdir)
        bodies = _bodies(slack.api_url, users, count)
        names = {str(b["metadata"]["name"]) for b in bodies}
        with ReadyWatch(kube, NAMESPACE) as watch:
            slack.reset()
            first, _ = kube.create_many(bodies, concurrency=16)
            try:
                last_ready = watch.wait_all(names, timeout=600 if shared else OFF_TIMEOUT)
            except TimeoutError:
                if shared:
                    raise
                # The baseline can livelock (every run rate limited part-way through its sweep,
                # retried, limited again): report how far it got, not an error.
                last_ready = first + OFF_TIMEOUT
            phase1 = slack.stats()
            ready_after = sorted(round(t - first, 3) for t in watch.ready.values())
        time.sleep(1.0)
        slack.reset()
        value = datetime.now(UTC).isoformat()
        asked = time.time()
        _request_all(kube, sorted(names), value)
        handled = _wait_handled(kube, names, value, timeout=900 if shared else OFF_TIMEOUT / 2)
        time.sleep(0.5)
        phase2 = slack.stats()
        return {
            "ready": len(ready_after),
            "seconds": last_ready - first,
            "ready_after_s": ready_after,
            "phase1": phase1,
            "phase2": phase2,
            "phase2_seconds": handled - asked,
        }
    finally:
        for part in (operator, slack, valkey_proc, kube):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()


def directory_memory(workdir: Path, users: int) -> tuple[float, float]:
    """MB of Valkey the shared directory takes for `users` (sweep of a test workspace), and seconds."""
    valkey_proc = start_valkey(workdir / "valkey-memory")
    server = SlackTestServer()
    try:
        server.add_token(TOKEN)
        for i in range(users):
            server.add_user(f"person{i}@example.com")
        server.start()
        client = valkey.Valkey.from_url(valkey_proc.url, decode_responses=True)
        before = int(client.info("memory")["used_memory"])
        settings = Settings(slack_rate_window_seconds=0.001, allowed_hosts="127.0.0.1")  # type: ignore[call-arg]
        fleet = Fleet.create(client, settings, fresh_after=time.time())
        slack = SlackClient(SecretStr(TOKEN), server.api_url, settings, fleet)
        started = time.monotonic()
        found = SlackWorkspaceCache(fleet, slack).users({"person1@example.com"})
        took = time.monotonic() - started
        assert "person1@example.com" in found
        after = int(client.info("memory")["used_memory"])
        return (after - before) / 1e6, took
    finally:
        server.stop()
        valkey_proc.stop()


def run(cfg: Config) -> ScenarioResult:
    users, count, window = (400, 6, 2.0) if cfg.quick else (4000, 30, 6.0)
    memory_users = 5000 if cfg.quick else 50_000
    result = ScenarioResult(
        "P7",
        f"fleet: {count} Reconciles x 2 user groups on one {users}-user workspace with Slack's tiers",
        params={
            "users": users,
            "reconciles": count,
            "window_s": window,
            "workers": 8,
            "slack_latency_s": 0.02,
        },
    )
    on = run_mode(cfg, shared=True, users=users, count=count, window=window)
    off = run_mode(cfg, shared=False, users=users, count=count, window=window)
    writes = 2 * count  # one usergroups.users.update per group: the busiest method
    lower_bound = writes / TIER_2 * window
    result.metrics.append(
        Metric(
            name="phase 1: all applied at once -> all Ready (cache+budget on)",
            unit="s",
            result=on["seconds"],
            baseline=off["seconds"],
            ratio=on["seconds"] / lower_bound,
            ratio_label="x tier lower bound",
            target=PHASE1_TARGET * lower_bound,
            target_label=f"<= {PHASE1_TARGET:g}x the tier lower bound ({lower_bound:.0f} s)",
            note=(
                f"lower bound = {writes} usergroups.users.update / {TIER_2} per {window:g} s; "
                f"off: {_off_seconds(off, count)} ({off['seconds'] / lower_bound:.1f}x). Calls on: "
                f"{_calls(on['phase1'])}; off: {_calls(off['phase1'])}"
            ),
        ).judge()
    )
    result.metrics.append(
        Metric(
            name="phase 1: HTTP 429 answers (cache+budget on)",
            unit="calls",
            result=on["phase1"]["rate_limited"],
            baseline=off["phase1"]["rate_limited"],
            target=None,
            note=f"off: {off['phase1']['rate_limited']}",
        ).judge()
    )
    result.metrics.extend(
        phase2_metrics(
            "",
            "Slack calls",
            on,
            off,
            target=PHASE2_CALLS_TARGET,
            target_label=f"<= {PHASE2_CALLS_TARGET}",
            calls=_calls,
        )
    )
    megabytes, took = directory_memory(cfg.subdir("p7-memory"), memory_users)
    result.metrics.append(
        Metric(
            name=f"shared directory in Valkey, {memory_users:,} users",
            unit="MB",
            result=megabytes,
            target=None,
            note=(
                f"used_memory growth after one sweep ({took:.1f} s, no tier waits): "
                "e-mail -> id and id -> e-mail hashes"
            ),
        ).judge()
    )
    result.series = {
        "ready_timelines": [
            {"label": "cache + budget on", "ready_after_s": on["ready_after_s"]},
            {"label": "cache + budget off", "ready_after_s": off["ready_after_s"]},
        ],
        "count": count,
        "lower_bound_s": round(lower_bound, 3),
        "lower_bound_label": f"{writes} usergroups.users.update at {TIER_2} per {window:g} s",
    }
    try:
        gitlab_metrics, gitlab_params = p7_gitlab.metrics(cfg)
    except Exception as exc:  # keep the Slack half's numbers; the GitLab half shows as missed
        gitlab_metrics, gitlab_params = [_failed("GitLab half", exc)], {}
        result.notes.append(f"GitLab half failed: {traceback.format_exc()[-1500:]}")
    result.metrics.extend(gitlab_metrics)
    result.params.update(gitlab_params)
    result.notes.append(p7_gitlab.NOTE)
    return result


def _failed(name: str, exc: Exception) -> Metric:
    return Metric(
        name=f"{name}: did not run to the end",
        unit="",
        result=math.nan,
        target=0,
        target_label="runs to the end",
        note=str(exc)[:300],
    ).judge()


def _off_seconds(off: dict[str, Any], count: int) -> str:
    if off["ready"] >= count:
        return f"{off['seconds']:.0f} s"
    return f"more than {off['seconds']:.0f} s (only {off['ready']} of {count} Ready by then)"


def _calls(stats: dict[str, Any]) -> str:
    by_method = dict(sorted(stats["by_method"].items(), key=lambda kv: -kv[1]))
    return f"{stats['calls']} ({', '.join(f'{k} {v}' for k, v in by_method.items())})"
