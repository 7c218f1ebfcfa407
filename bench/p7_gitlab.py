"""P7, GitLab half: many Reconciles on one GitLab instance and one token user, through the real
operator, against a GitLab test server that throttles the user as GitLab does (429 + Retry-After),
with the shared cache and budget on vs off, same run.

GitLab's documented limits (docs/scaling.md): GitLab.com allows 2,000 authenticated API requests a
minute per user, whatever the endpoint; the Members API allows 60 member deletions a minute per
group or project and user. The test server enforces both over a window shortened 10x with the
counts shortened 10x too (200 requests and 6 deletions per 6 s: the same rate, 33 requests a
second), and the operator's budget is set to the same.

Setup per mode: Kubernetes API emulator, Valkey, the GitLab test server (in this process, 20 ms a
call), `reconciler run -A` with 8 workers, and N Reconciles of two groups each: `a` new (10 members
to add), `b` drifted (one member missing, one at the wrong level, one not listed).
- Phase 1, all applied at once: time from the first create to all Ready, as a ratio to the
  throttle's lower bound: the requests any implementation must make (one GET /user, one member
  listing per group, one write per change) / the limit x window. User lookups are left out of
  the bound: a perfect implementation could learn every id from other groups' listings.
- Phase 2, nothing changed, every Reconcile asked to run again (`requested-at` on all at once):
  GitLab requests for the whole fleet and 429 answers. A run asked for explicitly must see each of
  its groups as listed after its request, and each group's members are only in its own listing,
  so one listing per group is the floor; the target allows a few shared GET /user on top.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from bench.common import Config, Metric, phase2_metrics
from bench.procs import KubeProc, ReadyWatch, operator_env, start_operator, start_valkey
from reconciler_testing.gitlab import DEVELOPER, OWNER, REPORTER, GitLabTestServer
from tests import builders

TOKEN = "glpat-bench_p7_fleet"  # fake; underscores keep it from looking like a real token
WORKERS = 8
PER_GROUP = 10
LATENCY = 0.02
PHASE1_TARGET = 1.5
NOTE = (
    "GitLab half (bench/p7_gitlab.py): the same operator against a GitLab test server that throttles "
    "the token's user at GitLab.com's documented 2,000 requests a minute (and 60 member removals a "
    "minute per group), counts and window shortened 10x: 200 requests and 6 removals per 6 s. A "
    "no-change re-run asked for explicitly must list each group after its request, and a group's "
    "members are only in its own listing, so one listing per group is the floor for GitLab (Slack's "
    "one usergroups.list covers every group): the target is that floor plus 5."
)
PHASE2_SLACK = 5
"""Phase 2 target: one listing per group plus at most this many other requests (GET /user)."""


def _removals(limit: tuple[int, float]) -> int:
    """GitLab's 60 removals a minute per group, scaled as the 2,000 requests a minute are."""
    return max(1, limit[0] * 60 // 2000)


def _names(pool: int, first: int) -> list[str]:
    return [f"user{(first + j) % pool}" for j in range(PER_GROUP)]


def _server(pool: int, count: int, limit: tuple[int, float]) -> GitLabTestServer:
    server = GitLabTestServer(latency=LATENCY)
    server.add_user("bot")
    for i in range(pool):
        server.add_user(f"user{i}")
    server.add_token(TOKEN, username="bot")
    server.add_group("fleet")
    server.add_member("group", "fleet", "bot", OWNER)
    for i in range(count):
        server.add_group(f"fleet/team-{i}-a")
        drifted = f"fleet/team-{i}-b"
        server.add_group(drifted)
        wanted = _names(pool, i * PER_GROUP + pool // 2)
        server.add_member("group", drifted, wanted[0], REPORTER)  # listed as developer
        for name in wanted[1:-1]:  # the last one is missing
            server.add_member("group", drifted, name, DEVELOPER)
        server.add_member(
            "group", drifted, f"user{(i * PER_GROUP + pool // 2 + PER_GROUP) % pool}", DEVELOPER
        )
    server.user_rate_limit = limit
    server.member_delete_limit = (_removals(limit), limit[1])

    return server.start()


def _bodies(url: str, pool: int, count: int, namespace: str) -> list[dict[str, Any]]:
    bodies = []
    for i in range(count):
        groups = [
            {
                "path": f"fleet/team-{i}-{part}",
                "members": [{"username": n, "accessLevel": "developer"} for n in _names(pool, first)],
            }
            for part, first in (("a", i * PER_GROUP), ("b", i * PER_GROUP + pool // 2))
        ]
        bodies.append(builders.gitlab_reconcile(f"gitlab-{i}", namespace, url, groups))
    return bodies


def _stats(server: GitLabTestServer, since: int) -> dict[str, Any]:
    calls = server.calls[since:]
    kinds = Counter(_kind(c.method, c.path) for c in calls if c.status != 429)
    return {
        "calls": sum(kinds.values()),
        "by_kind": dict(kinds.most_common()),
        "rate_limited": sum(1 for c in calls if c.status == 429),
    }


def _kind(method: str, path: str) -> str:
    if path.endswith("/members") and method == "GET":
        return "member listings"
    if "/members" in path:
        return f"{method} member"
    if path.endswith("/users"):
        return "user lookups"
    return f"{method} {path.removeprefix('/api/v4')}"


def run_mode(cfg: Config, *, shared: bool, pool: int, count: int, limit: tuple[int, float]) -> dict[str, Any]:
    from bench.p7_fleet import NAMESPACE, _request_all, _wait_handled  # here: p7_fleet imports this module

    workdir = cfg.subdir(f"p7-gitlab-{'on' if shared else 'off'}")
    kube = valkey_proc = operator = None
    server = _server(pool, count, limit)
    try:
        kube = KubeProc(workdir, [NAMESPACE])
        valkey_proc = start_valkey(workdir / "valkey")
        kube.create_secret(NAMESPACE, "gitlab-bot", {"token": TOKEN})
        env = operator_env(
            kube.write_kubeconfig(workdir / "kubeconfig"),
            valkey_proc.url,
            workdir,
            workers=WORKERS,
            metrics_port=None,
        )
        env["RECONCILER_GITLAB_RATE_LIMIT"] = str(limit[0])
        env["RECONCILER_GITLAB_RATE_WINDOW_SECONDS"] = str(limit[1])
        env["RECONCILER_GITLAB_MEMBER_DELETE_LIMIT"] = str(_removals(limit))
        env["RECONCILER_SHARED_CACHE"] = "true" if shared else "false"
        env["RECONCILER_BACKOFF_BASE_SECONDS"] = "1"
        env["RECONCILER_BACKOFF_MAX_SECONDS"] = str(limit[1] * 2)
        operator = start_operator("operator", env, workdir)
        bodies = _bodies(server.url, pool, count, NAMESPACE)
        names = {str(b["metadata"]["name"]) for b in bodies}
        with ReadyWatch(kube, NAMESPACE) as watch:
            mark = len(server.calls)
            first, _ = kube.create_many(bodies, concurrency=16)
            try:
                seconds = watch.wait_all(names, timeout=120 if cfg.quick else 600) - first
            except TimeoutError:
                seconds = math.inf  # the cache-off baseline may never get there
            phase1 = _stats(server, mark)
            ready_after = sorted(round(t - first, 3) for t in watch.ready.values())
        members = sum(len(server.members("group", f"fleet/team-{i}-a")) for i in range(count))
        time.sleep(1.0)
        mark = len(server.calls)
        value = datetime.now(UTC).isoformat()
        asked = time.time()
        _request_all(kube, sorted(names), value)
        handled = _wait_handled(kube, names, value, timeout=120 if cfg.quick else 900)
        time.sleep(0.5)
        return {
            "seconds": seconds,
            "ready_after_s": ready_after,
            "members_added": members,
            "phase1": phase1,
            "phase2": _stats(server, mark),
            "phase2_seconds": handled - asked,
        }
    finally:
        for part in (operator, valkey_proc, kube):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()
        server.stop()


def metrics(cfg: Config) -> tuple[list[Metric], dict[str, Any]]:
    pool, count, limit = (40, 6, (40, 2.0)) if cfg.quick else (100, 30, (200, 6.0))
    on = run_mode(cfg, shared=True, pool=pool, count=count, limit=limit)
    off = run_mode(cfg, shared=False, pool=pool, count=count, limit=limit)
    if on["members_added"] != count * PER_GROUP:
        raise RuntimeError(f"P7 GitLab: the fleet with the cache on did not converge: {on}")
    groups = 2 * count
    writes = count * (PER_GROUP + 3)
    needed = 1 + groups + writes
    lower_bound = needed / limit[0] * limit[1]
    phase2_target = groups + PHASE2_SLACK
    params = {
        "gitlab_users": pool,
        "gitlab_reconciles": count,
        "gitlab_limit": f"{limit[0]} per {limit[1]:g} s per user",
        "gitlab_latency_s": LATENCY,
    }
    found = [
        Metric(
            name="GitLab phase 1: all applied at once -> all Ready (cache+budget on)",
            unit="s",
            result=on["seconds"],
            baseline=off["seconds"],
            ratio=on["seconds"] / lower_bound,
            ratio_label="x throttle lower bound",
            target=PHASE1_TARGET * lower_bound,
            target_label=f"<= {PHASE1_TARGET:g}x the throttle lower bound ({lower_bound:.1f} s)",
            note=(
                f"lower bound = {needed} requests (GET /user 1, member listings {groups}, writes {writes}) "
                f"/ {limit[0]} per {limit[1]:g} s; off: {off['seconds']:.1f} s "
                f"({off['seconds'] / lower_bound:.1f}x). Requests on: {_calls(on['phase1'])}; "
                f"off: {_calls(off['phase1'])}"
            ),
        ).judge(),
        Metric(
            name="GitLab phase 1: HTTP 429 answers (cache+budget on)",
            unit="calls",
            result=on["phase1"]["rate_limited"],
            baseline=off["phase1"]["rate_limited"],
            target=None,
            note=f"off: {off['phase1']['rate_limited']}",
        ).judge(),
        *phase2_metrics(
            "GitLab ",
            "requests",
            on,
            off,
            target=phase2_target,
            target_label=f"<= {phase2_target} (one listing per group + {PHASE2_SLACK})",
            calls=_calls,
        ),
    ]
    return found, params


def _calls(stats: dict[str, Any]) -> str:
    return f"{stats['calls']} ({', '.join(f'{k} {v}' for k, v in stats['by_kind'].items())})"
