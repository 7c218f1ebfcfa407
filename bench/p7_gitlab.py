"""P7, GitLab half: many Reconciles on one GitLab instance and token user, with GitLab's per-user
throttle (429 + Retry-After) over a shortened window, with the shared directory and budget on vs
off, same run.

In process, without the operator: 8 worker threads run the Reconciles through `run_integration`
(as the operator's workers do) and, like the operator, give a rate-limited run back and run it
again after its Retry-After. Each Reconcile adds 10 users, drawn from one pool, to its own group,
all asked for at once (the baseline, each run alone, may never finish: then it reports inf after
20 s with --quick, 300 s otherwise). Measured: GitLab calls and user lookups for the whole fleet, 429 answers,
and time to all applied as a ratio to the throttle's lower bound (the POSTs any implementation
must make / the limit x window).
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import Any

import valkey
from pydantic import SecretStr

from bench.common import Config, Metric
from bench.procs import start_valkey
from reconciler.errors import TransientError
from reconciler.fleet import Fleet
from reconciler.models.spec import ReconcileSpec
from reconciler.runner import run_integration
from reconciler.settings import Settings
from reconciler_testing.gitlab import OWNER, GitLabTestServer

TOKEN = "glpat-bench_p7_fleet"  # fake; underscores keep it from looking like a real token
WORKERS = 8
PER_GROUP = 10
LATENCY = 0.01


def _server(users: int, count: int, limit: tuple[int, float]) -> GitLabTestServer:
    server = GitLabTestServer(latency=LATENCY)
    server.add_user("bot")
    for i in range(users):
        server.add_user(f"user{i}")
    server.add_token(TOKEN, username="bot")
    server.add_group("fleet")
    server.add_member("group", "fleet", "bot", OWNER)
    for i in range(count):
        server.add_group(f"fleet/team-{i}")
    server.user_rate_limit = limit
    return server.start()


def _spec(url: str, i: int, users: int) -> ReconcileSpec:
    members = [
        {"username": f"user{(i * 7 + j) % users}", "accessLevel": "developer"} for j in range(PER_GROUP)
    ]
    return ReconcileSpec.model_validate(
        {
            "integration": "gitlab-members",
            "credentials": {"secretRef": {"name": "gitlab-bot"}},
            "gitlabMembers": {"url": url, "groups": [{"path": f"fleet/team-{i}", "members": members}]},
        }
    )


def run_mode(
    cfg: Config, *, shared: bool, users: int, count: int, limit: tuple[int, float]
) -> dict[str, Any]:
    settings = Settings(  # type: ignore[call-arg]
        gitlab_rate_limit=limit[0],
        gitlab_rate_window_seconds=limit[1],
        rate_limit_retries=0,
        rate_limit_inline_wait_seconds=1.0,
        allowed_hosts="127.0.0.1",
    )
    valkey_proc = (
        start_valkey(cfg.subdir(f"p7-gitlab-{'on' if shared else 'off'}") / "valkey") if shared else None
    )
    server = _server(users, count, limit)
    try:
        client = valkey.Valkey.from_url(valkey_proc.url, decode_responses=True) if valkey_proc else None
        specs = [_spec(server.url, i, users) for i in range(count)]
        queue: list[tuple[float, int]] = [(0.0, i) for i in range(count)]
        lock = threading.Lock()
        done: dict[int, float] = {}
        runs = [0]
        asked = time.time()
        started = time.monotonic()
        give_up = started + (20 if cfg.quick else 300)

        def worker() -> None:
            while time.monotonic() < give_up:
                with lock:
                    if len(done) == count:
                        return
                    item = heapq.heappop(queue) if queue and queue[0][0] <= time.monotonic() else None
                if item is None:
                    time.sleep(0.01)
                    continue
                i = item[1]
                fleet = Fleet.create(client, settings, fresh_after=asked) if client is not None else None
                outcome = run_integration(specs[i], SecretStr(TOKEN), settings, dry_run=False, fleet=fleet)
                with lock:
                    runs[0] += 1
                    if outcome.ok:
                        done[i] = time.monotonic() - started
                    elif isinstance(outcome.error, TransientError):
                        wait = getattr(outcome.error, "retry_after", None) or 1.0
                        heapq.heappush(queue, (time.monotonic() + wait, i))
                    else:
                        raise RuntimeError(f"P7 GitLab run {i} failed: {outcome.error}")

        threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(330)
        calls = list(server.calls)
        return {
            "seconds": max(done.values()) if len(done) == count else float("inf"),
            "runs": runs[0],
            "calls": sum(1 for c in calls if c.status != 429),
            "lookups": sum(
                1 for c in calls if c.method == "GET" and c.path.endswith("/users") and c.status != 429
            ),
            "rate_limited": server.rate_limited,
            "members": sum(len(server.members("group", f"fleet/team-{i}")) for i in range(count)),
        }
    finally:
        server.stop()
        if valkey_proc is not None:
            valkey_proc.stop()


def metrics(cfg: Config) -> tuple[list[Metric], dict[str, Any]]:
    users, count, limit = (30, 8, (60, 2.0)) if cfg.quick else (60, 30, (60, 2.0))
    on = run_mode(cfg, shared=True, users=users, count=count, limit=limit)
    off = run_mode(cfg, shared=False, users=users, count=count, limit=limit)
    if on["members"] != count * PER_GROUP:
        raise RuntimeError(f"P7 GitLab: the fleet with the directory on did not converge: {on}")
    writes = count * PER_GROUP
    lower_bound = writes / limit[0] * limit[1]
    params = {
        "gitlab_users": users,
        "gitlab_reconciles": count,
        "gitlab_limit": f"{limit[0]} per {limit[1]:g} s",
    }
    found = [
        Metric(
            name="GitLab: user lookups for the whole fleet (directory on)",
            unit="calls",
            result=on["lookups"],
            baseline=off["lookups"],
            ratio=off["lookups"] / max(1, on["lookups"]),
            ratio_label="x fewer lookups",
            target=users,
            target_label=f"<= {users} (one per distinct username)",
            note=f"{count} Reconciles x {PER_GROUP} users from a pool of {users}; off: {off['lookups']}",
        ).judge(),
        Metric(
            name="GitLab: all applied at once -> all done (directory+budget on)",
            unit="s",
            result=on["seconds"],
            baseline=off["seconds"],
            ratio=on["seconds"] / lower_bound,
            ratio_label="x throttle lower bound",
            target=None,
            note=(
                f"lower bound = {writes} POST members / {limit[0]} per {limit[1]:g} s = {lower_bound:.1f} s; "
                f"off: {off['seconds']:.1f} s ({off['members']} of {writes} members added; inf: never "
                f"finished). Calls on: {on['calls']} in {on['runs']} runs; "
                f"off: {off['calls']} in {off['runs']} runs"
            ),
        ).judge(),
        Metric(
            name="GitLab: HTTP 429 answers (directory+budget on)",
            unit="calls",
            result=on["rate_limited"],
            baseline=off["rate_limited"],
            target=None,
            note=(
                f"off: {off['rate_limited']}. On: the first runs of a token, before any of them knows "
                "its user, draw their GET /user from the token's budget, not the user's"
            ),
        ).judge(),
    ]
    return found, params
