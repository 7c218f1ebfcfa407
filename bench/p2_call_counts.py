"""P2: external API calls per run, counted in the Slack/GitLab test servers' call logs.

The real services run in-process through `reconciler.runner.run_integration` (the entry point the
operator and the CLI share) against the test servers; the baseline is bench/naive.py, a per-user
lookup implementation of the same plan, run against an identical fresh server. Both must leave the
servers in the same final state (checked). Slack: G usergroups x U users, 3 changes (a user added to
one group, removed from another, added to a third). GitLab: G groups x M direct members, 3 changes
(a new member who is in no listed group, a removal, a level change). "Reads independent of user
count" is checked by re-running ours with other user counts per group (same workspace).
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from bench.common import Config, Metric, ScenarioResult
from bench.naive import GitlabGroupSpec, SlackGroupSpec, naive_gitlab, naive_slack
from bench.profiling import Profiler
from reconciler.runner import parse_spec, run_integration
from reconciler.settings import Settings
from reconciler_testing.gitlab import DEVELOPER, REPORTER, GitLabTestServer
from reconciler_testing.slack import WRITE_METHODS, SlackTestServer

SLACK_TOKEN = "xoxb-bench-p2"
GITLAB_TOKEN = "glpat-bench-p2"
CHANGES = 3
TARGET_FACTOR = 50.0


# --- Slack -------------------------------------------------------------------------------------


def _slack_case(groups: int, per_group: int, workspace: int) -> tuple[dict[str, Any], list[SlackGroupSpec]]:
    emails = [f"user{i}@example.com" for i in range(workspace)]
    desired = [
        SlackGroupSpec(f"team-{g}", emails[g * per_group : (g + 1) * per_group]) for g in range(groups)
    ]
    seed_groups = []
    for g, spec in enumerate(desired):
        current = list(spec.users)
        if g == 0:
            current = current[:-1]  # change 1: add the last user
        elif g == 1:
            current = [*current, emails[-1]]  # change 2: remove a user not in the spec
        elif g == 2:
            current = current[1:]  # change 3: add the first user
        seed_groups.append({"handle": spec.handle, "name": f"Team {g}", "users": current})
    seed = {"tokens": [SLACK_TOKEN], "users": emails, "usergroups": seed_groups}
    return seed, desired


def _slack_server(seed: dict[str, Any]) -> SlackTestServer:
    server = SlackTestServer().start()
    server.load_seed(seed)
    server.reset_calls()
    return server


def _run_ours(raw_spec: dict[str, Any], token: str) -> int:
    outcome = run_integration(parse_spec(raw_spec), SecretStr(token), Settings(), dry_run=False)
    if outcome.error is not None:
        raise RuntimeError(f"run failed: {outcome.error.reason}: {outcome.error.message}")
    return len(outcome.applied)


def slack_ours(groups: int, per_group: int, workspace: int) -> tuple[int, int, dict[str, set[str]]]:
    seed, desired = _slack_case(groups, per_group, workspace)
    with _slack_server(seed) as server:
        spec = {
            "integration": "slack-usergroups",
            "credentials": {"secretRef": {"name": "x"}},
            "slackUsergroups": {
                "apiUrl": server.api_url,
                "usergroups": [
                    {"handle": g.handle, "name": f"Team {i}", "users": g.users} for i, g in enumerate(desired)
                ],
            },
        }
        _run_ours(spec, SLACK_TOKEN)
        calls = server.calls
        final = {g["handle"]: set(g["users"]) for g in server.usergroups()}
    writes = sum(1 for c in calls if c.method in WRITE_METHODS)
    return len(calls) - writes, writes, final


def slack_naive(groups: int, per_group: int, workspace: int) -> tuple[int, int, dict[str, set[str]]]:
    seed, desired = _slack_case(groups, per_group, workspace)
    with _slack_server(seed) as server:
        naive_slack(server.api_url, SLACK_TOKEN, desired)
        calls = server.calls
        final = {g["handle"]: set(g["users"]) for g in server.usergroups()}
    writes = sum(1 for c in calls if c.method in WRITE_METHODS)
    return len(calls) - writes, writes, final


# --- GitLab ------------------------------------------------------------------------------------


def _gitlab_case(groups: int, per_group: int) -> tuple[GitLabTestServer, list[GitlabGroupSpec]]:
    pool = [f"dev{i}" for i in range(groups * per_group + 2)]
    server = GitLabTestServer().start()
    server.load_seed(
        {
            "users": ["bench-bot", *pool],
            "tokens": [{"token": GITLAB_TOKEN, "username": "bench-bot", "scopes": ["api"]}],
            "groups": [f"bench-g{g}" for g in range(groups)],
        }
    )
    specs = []
    for g in range(groups):
        path = f"bench-g{g}"
        desired = {name: DEVELOPER for name in pool[g * per_group : (g + 1) * per_group]}
        current = dict(desired)
        if g == 0:  # change 1: a new member who is a member of no listed group (one user lookup)
            newcomer = pool[-2]
            current.pop(next(iter(desired)))
            desired = {**{k: v for k, v in desired.items() if k in current}, newcomer: DEVELOPER}
        elif g == 1:  # change 2: remove a member not in the spec
            current[pool[-1]] = DEVELOPER
        elif g == 2:  # change 3: a level change
            current[next(iter(current))] = REPORTER
        for username, level in current.items():
            server.add_member("group", path, username, level)
        specs.append(GitlabGroupSpec(path, desired))
    server.reset_calls()
    return server, specs


def _gitlab_final(server: GitLabTestServer, specs: list[GitlabGroupSpec]) -> dict[str, dict[str, int]]:
    return {s.path: {u: m["access_level"] for u, m in server.members("group", s.path).items()} for s in specs}


def gitlab_ours(groups: int, per_group: int) -> tuple[int, int, dict[str, dict[str, int]]]:
    server, specs = _gitlab_case(groups, per_group)
    with server:
        names = {v: k for k, v in {"developer": DEVELOPER, "reporter": REPORTER}.items()}
        spec = {
            "integration": "gitlab-members",
            "credentials": {"secretRef": {"name": "x"}},
            "gitlabMembers": {
                "url": server.url,
                "groups": [
                    {
                        "path": s.path,
                        "members": [
                            {"username": u, "accessLevel": names[lvl]} for u, lvl in s.members.items()
                        ],
                    }
                    for s in specs
                ],
            },
        }
        _run_ours(spec, GITLAB_TOKEN)
        calls = server.calls
        final = _gitlab_final(server, specs)
    writes = sum(1 for c in calls if c.method != "GET")
    return len(calls) - writes, writes, final


def gitlab_naive(groups: int, per_group: int) -> tuple[int, int, dict[str, dict[str, int]]]:
    server, specs = _gitlab_case(groups, per_group)
    with server:
        naive_gitlab(server.url, GITLAB_TOKEN, specs)
        calls = server.calls
        final = _gitlab_final(server, specs)
    writes = sum(1 for c in calls if c.method != "GET")
    return len(calls) - writes, writes, final


# --- the scenario ------------------------------------------------------------------------------


def _calls_metric(name: str, ours: int, naive: int, *, minimum: int, minimum_what: str, note: str) -> Metric:
    """>= 50x fewer calls than naive, unless even the least possible number of calls cannot get there."""
    best = naive / minimum
    possible = best >= TARGET_FACTOR
    if not possible:
        note += (
            f". {TARGET_FACTOR:g}x fewer is mathematically impossible for these sizes: any implementation "
            f"needs at least {minimum} calls ({minimum_what}), "
            f"so {naive} naive calls allow at most {best:.1f}x"
        )
    return Metric(
        name=name,
        unit="calls",
        result=ours,
        baseline=naive,
        ratio=naive / ours,
        ratio_label="x fewer",
        target=naive / TARGET_FACTOR if possible else None,
        target_label=(
            f">= {TARGET_FACTOR:g}x fewer (<= {naive / TARGET_FACTOR:.1f})"
            if possible
            else f">= {TARGET_FACTOR:g}x fewer: impossible here (best {best:.1f}x)"
        ),
        note=note,
    ).judge()


def _writes_equal_changes(service: str, writes: int, naive_writes: int) -> Metric:
    return Metric(
        name=f"{service} writes per run",
        unit="calls",
        result=writes,
        baseline=naive_writes,
        target=CHANGES,
        better="equal",
        target_label=f"== changes ({CHANGES})",
    ).judge()


def _independent(name: str, sweep: dict[int, int], why: str) -> Metric:
    values = list(sweep.values())
    metric = Metric(
        name=name,
        unit="calls",
        result=values[-1],
        target=None,
        target_label="same for every user count",
        note="reads per run: " + ", ".join(f"{n} users: {r}" for n, r in sweep.items()) + f" ({why})",
    )
    metric.passed = max(values) == min(values)
    if not metric.passed:
        metric.miss_by = f"reads vary {min(values)}-{max(values)}"
    return metric


def run(cfg: Config, profiler: Profiler | None = None) -> ScenarioResult:
    if cfg.quick:
        s_groups, s_users, s_sweep, workspace = 4, 5, (2, 5), 40
        g_groups, g_members, g_sweep = 3, 5, (3, 5)
    else:
        # 8 user groups: the most one Reconcile may name (the CRD limit since #11).
        s_groups, s_users, s_sweep, workspace = 8, 25, (5, 10, 25), 520
        g_groups, g_members, g_sweep = 10, 30, (10, 30, 60)
    result = ScenarioResult(
        "P2",
        "External API calls per run (Slack, GitLab) vs a naive per-user implementation",
        params={
            "slack": f"{s_groups} usergroups x {s_users} users, workspace {workspace} users",
            "gitlab": f"{g_groups} groups x {g_members} members",
            "changes": CHANGES,
        },
    )

    # Slack
    reads, writes, final = slack_ours(s_groups, s_users, workspace)
    n_reads, n_writes, n_final = slack_naive(s_groups, s_users, workspace)
    if final != n_final:
        raise AssertionError("the naive Slack implementation did not reach the same final state")
    ours, naive = reads + writes, n_reads + n_writes
    sweep = {u: slack_ours(s_groups, u, workspace)[0] for u in s_sweep}
    pages = -(-workspace // 200)
    result.metrics += [
        _calls_metric(
            f"Slack calls per run ({s_groups}x{s_users}, {CHANGES} changes)",
            ours,
            naive,
            minimum=1 + pages + CHANGES,
            minimum_what="usergroups.list + users.list pages + writes",
            note=f"ours: {reads} reads (usergroups.list 1 + users.list {pages} pages of 200 for a "
            f"{workspace}-user workspace) + {writes} writes; naive: {n_reads} reads + "
            f"{n_writes} writes",
        ),
        _independent(
            "Slack reads per run at " + "/".join(str(u) for u in s_sweep) + " users per group",
            sweep,
            "users.list pages grow with the workspace, ceil(users/200), not with the spec",
        ),
        _writes_equal_changes("Slack", writes, n_writes),
    ]

    # GitLab
    reads, writes, final = gitlab_ours(g_groups, g_members)
    n_reads, n_writes, n_final = gitlab_naive(g_groups, g_members)
    if final != n_final:
        raise AssertionError("the naive GitLab implementation did not reach the same final state")
    ours, naive = reads + writes, n_reads + n_writes
    minimum = g_groups + CHANGES  # one member listing per group is unavoidable, plus one write per change
    sweep = {m: gitlab_ours(g_groups, m)[0] for m in g_sweep}
    calls = _calls_metric(
        f"GitLab calls per run ({g_groups}x{g_members}, {CHANGES} changes)",
        ours,
        naive,
        minimum=minimum,
        minimum_what="one member listing per group + one write per change",
        note=f"ours: {reads} reads (GET /user 1 + one member listing per group {g_groups} + user lookups for "
        f"members in no listed group) + {writes} writes; naive: {n_reads} reads + {n_writes} writes",
    )
    result.metrics += [
        calls,
        Metric(
            name=f"GitLab calls above the minimum ({minimum})",
            unit="calls",
            result=ours - minimum,
            target=None,
            note="the minimum is one listing per group + one write per change; ours adds GET /user (the "
            "token's own user, never removed) and one lookup per desired user who is in no listed group",
        ),
        _independent(
            "GitLab reads per run at " + "/".join(str(m) for m in g_sweep) + " members per group",
            sweep,
            "a member listing is paginated by 100, so it grows past 100 members per group",
        ),
        _writes_equal_changes("GitLab", writes, n_writes),
    ]
    result.notes.append(
        "both implementations reach the same final state on identical fresh servers (checked)"
    )
    return result
