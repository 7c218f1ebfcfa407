"""A hostile tenant cannot starve the others: its Reconciles point at servers that answer 429 with
`Retry-After: 86400`, drip their answers one byte at a time, or always have a next page. There are
more of them than workers; another namespace's Reconcile must still be done within seconds, and the
hostile ones must say why they wait (RateLimited, Timeout, BadResponse) instead of holding workers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler_testing.gitlab import GitLabTestServer
from reconciler_testing.slack import SlackTestServer
from tests.e2e.conftest import Process, start_operator
from tests.e2e.helpers import apply_group, gitlab_reconcile, slack_reconcile, unique, wait_ready
from tests.kube import KubeApi, condition

pytestmark = pytest.mark.e2e

HOSTILE, CALM = "tenant-hostile", "tenant-calm"
SLACK_TOKEN = "xoxb-hostile-tenant-7777777777"
GITLAB_TOKEN = "glpat-hostile-tenant-77777"
WORKERS = 2
DEADLINE = 2.0


@dataclass
class World:
    kube: KubeApi
    calm: SlackTestServer
    limited: SlackTestServer
    dripping: SlackTestServer
    endless: SlackTestServer
    gitlab_dripping: GitLabTestServer
    gitlab_endless: GitLabTestServer
    operator: Process


def _slack(stack: contextlib.ExitStack) -> SlackTestServer:
    server = stack.enter_context(SlackTestServer())
    server.add_token(SLACK_TOKEN)
    server.add_user("mallory@example.com")
    return server


def _gitlab(stack: contextlib.ExitStack) -> GitLabTestServer:
    server = stack.enter_context(GitLabTestServer())
    for name in ("bot", "mallory"):
        server.add_user(name)
    server.add_token(GITLAB_TOKEN, username="bot")
    server.add_group("evil")
    server.add_member("group", "evil", "bot", 50)
    return server


@pytest.fixture(scope="module")
def world(kube: KubeApi, base_env: dict[str, str], e2e_dir: Path) -> Iterator[World]:
    for namespace in (HOSTILE, CALM):
        kube.add_namespace(namespace)
        kube.create_secret(namespace, "slack-bot", {"token": SLACK_TOKEN})
        kube.create_secret(namespace, "gitlab-bot", {"token": GITLAB_TOKEN})
    env = {
        **base_env,
        "RECONCILER_MAX_WORKERS": str(WORKERS),
        "RECONCILER_RUN_DEADLINE_SECONDS": str(DEADLINE),
        "RECONCILER_RATE_LIMIT_INLINE_WAIT_SECONDS": "1",
        "RECONCILER_MAX_PAGES": "30",
        "RECONCILER_HTTP_TIMEOUT_SECONDS": "30",  # longer than the test: only the deadline may cut
    }
    with contextlib.ExitStack() as stack:
        calm, limited, dripping, endless = (_slack(stack) for _ in range(4))
        limited.rate_limit(None, 10**6, retry_after=86400)
        dripping.drip_seconds = 0.2
        endless.endless_pages = True
        endless.page_limit_cap = 1
        gitlab_dripping, gitlab_endless = _gitlab(stack), _gitlab(stack)
        gitlab_dripping.drip_seconds = 0.2
        gitlab_endless.endless_pages = True
        operator = start_operator("operator-hostile", env, e2e_dir, HOSTILE, CALM)
        stack.callback(operator.stop)
        yield World(kube, calm, limited, dripping, endless, gitlab_dripping, gitlab_endless, operator)


def _hostile_slack(world: World, server: SlackTestServer, prefix: str, **spec: Any) -> str:
    name = unique(prefix)
    group = {"handle": unique(prefix), "name": f"Group {name}", "users": ["mallory@example.com"]}
    world.kube.create_reconcile(slack_reconcile(name, HOSTILE, server.api_url, [group], **spec))
    return name


def _hostile_gitlab(world: World, server: GitLabTestServer, prefix: str) -> str:
    name = unique(prefix)
    groups = [{"path": "evil", "members": [{"username": "mallory", "accessLevel": "developer"}]}]
    world.kube.create_reconcile(gitlab_reconcile(name, HOSTILE, server.url, groups))
    return name


def _calm_run_takes(world: World) -> float:
    started = time.monotonic()
    name, _ = apply_group(world.kube, world.calm.api_url, CALM, "calm", ["mallory@example.com"])
    wait_ready(world.kube, CALM, name, timeout=60)
    return time.monotonic() - started


def _reason(obj: dict[str, Any], type_: str) -> str:
    return str(condition(obj, type_).get("reason"))


def test_a_hostile_tenant_does_not_starve_another_namespace(world: World) -> None:
    baseline = _calm_run_takes(world)

    hostile = {
        # With a 1 s interval: the interval timer too must wait for the time the service asked.
        "limited": [_hostile_slack(world, world.limited, "limited", interval="1s") for _ in range(2)],
        "dripping": [
            _hostile_slack(world, world.dripping, "drip"),
            _hostile_gitlab(world, world.gitlab_dripping, "gldrip"),
        ],
        "endless": [
            _hostile_slack(world, world.endless, "endless"),
            _hostile_gitlab(world, world.gitlab_endless, "glendless"),
        ],
    }
    time.sleep(0.5)  # the hostile runs have taken the workers
    contended = _calm_run_takes(world)
    print(f"calm Reconcile: {baseline:.2f}s alone, {contended:.2f}s beside the hostile tenant")
    # Each hostile run holds a worker at most DEADLINE (6 of them on 2 workers, then they back off):
    # a few seconds, where unbounded they would hold both workers for a day. Slack for a loaded CI.
    assert contended < baseline + 3 * DEADLINE + 6, (baseline, contended)

    for name in hostile["limited"]:
        obj = world.kube.wait_for(HOSTILE, name, lambda o: _reason(o, "Ready") == "RateLimited", 30)
        reconciling = condition(obj, "Reconciling")
        assert (reconciling["status"], reconciling["reason"]) == ("True", "RateLimited")
        assert condition(obj, "Stalled")["status"] == "False"
        next_try = str(reconciling["message"]).split("next try at ")[1].split(" ")[0]
        wait = datetime.fromisoformat(next_try.replace("Z", "+00:00")) - datetime.now(UTC)
        assert 800 < wait.total_seconds() <= 900  # Retry-After 86400, capped at 15 minutes
    for name in hostile["dripping"]:
        obj = world.kube.wait_for(HOSTILE, name, lambda o: _reason(o, "Ready") == "Timeout", 30)
        assert condition(obj, "Reconciling")["status"] == "True"  # transient: retried with backoff
        assert "RECONCILER_RUN_DEADLINE_SECONDS" in str(condition(obj, "Ready")["message"])
    for name in hostile["endless"]:
        obj = world.kube.wait_for(HOSTILE, name, lambda o: _reason(o, "Ready") == "BadResponse", 30)
        assert "kept paginating past 30 pages" in str(condition(obj, "Ready")["message"])

    # A 429 of a day: no more calls (interval or retry) before the capped 15 minutes.
    time.sleep(2)  # two interval checks (RECONCILER_INTERVAL_CHECK_SECONDS=1 in the e2e env)
    # At most one call per Reconcile (with the shared budget, the second may not even call).
    assert 1 <= len(world.limited.calls) <= 2, [c.method for c in world.limited.calls]
