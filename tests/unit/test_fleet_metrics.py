"""The fleet's metrics (reconciler/fleet/metrics.py) count what really happened: each answer the real
clients got from the Slack and GitLab test servers (compared with what the servers logged), waits
and deferrals of the shared budget in a real valkey-server, and shared reads fetched or shared.

The registry is process-wide: every check compares a counter before and after."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
import valkey
from prometheus_client import REGISTRY
from pydantic import SecretStr

from reconciler.errors import RateLimited, TransientError
from reconciler.fleet import Fleet, RateBudget, ReadStamp, SharedReads, metrics
from reconciler.integrations.gitlab_members.client import GitlabClient
from reconciler.integrations.slack_usergroups.client import SlackClient
from reconciler.models.spec import ReconcileSpec
from reconciler.runner import run_integration
from reconciler.settings import Settings
from reconciler_testing.gitlab import DEVELOPER, OWNER, GitLabTestServer
from reconciler_testing.slack import SlackTestServer
from tests.valkey_server import ValkeyProcess, free_port

SLACK_TOKEN = "xoxb-5555-6666-metrics-secret-token"
GITLAB_TOKEN = "glpat-Metrics-Token-0123456789abcdef"
ALICE, BOB = "alice@example.com", "bob@example.com"
SECRET_GROUP = "tenant-secret-group"
"""A group path a tenant chose: no label value may contain it."""

Labels = tuple[tuple[str, str], ...]


def counters(name: str) -> dict[Labels, float]:
    """Every sample of the counter `name` (without `_total`), by its labels."""
    found: dict[Labels, float] = {}
    for family in REGISTRY.collect():
        if family.name == name:
            for sample in family.samples:
                if sample.name == f"{name}_total":
                    found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def grown(before: dict[Labels, float], after: dict[Labels, float]) -> dict[Labels, float]:
    """What each series gained between two `counters` snapshots (series that did not grow left out)."""
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests_of(integration: str, delta: dict[Labels, float]) -> Counter[tuple[str, str]]:
    """(method, code) -> answers counted, of one integration."""
    found: Counter[tuple[str, str]] = Counter()
    for labels, count in delta.items():
        named = dict(labels)
        if named["integration"] == integration:
            found[(named["method"], named["code"])] += int(count)
    return found


@pytest.fixture
def cache(valkey_server: ValkeyProcess) -> valkey.Valkey:
    return valkey.Valkey.from_url(valkey_server.url, decode_responses=True)


@pytest.fixture
def slack() -> Iterator[SlackTestServer]:
    with SlackTestServer(team_id=f"T{uuid.uuid4().hex[:10].upper()}") as server:
        server.add_token(SLACK_TOKEN)
        server.add_user(ALICE)
        server.add_user(BOB)
        yield server


@pytest.fixture
def gitlab() -> Iterator[GitLabTestServer]:
    with GitLabTestServer() as server:
        for name in ("robot", "alice", "bob"):
            server.add_user(name)
        server.add_token(GITLAB_TOKEN, username="robot")
        server.add_group(f"{SECRET_GROUP}/team")
        server.add_member("group", f"{SECRET_GROUP}/team", "robot", OWNER)
        server.add_member("group", f"{SECRET_GROUP}/team", "bob", DEVELOPER)
        yield server


def slack_run(slack: SlackTestServer, cache: valkey.Valkey, settings: Settings, *, asked: float) -> bool:
    spec = ReconcileSpec.model_validate(
        {
            "integration": "slack-usergroups",
            "credentials": {"secretRef": {"name": "slack-token"}},
            "slackUsergroups": {
                "apiUrl": slack.api_url,
                "usergroups": [{"handle": "oncall", "name": "On call", "users": [ALICE, BOB]}],
            },
        }
    )
    fleet = Fleet.create(cache, settings, fresh_after=asked)
    outcome = run_integration(spec, SecretStr(SLACK_TOKEN), settings, dry_run=False, fleet=fleet)
    if outcome.error is not None and outcome.error.reason == "RateLimited":
        raise outcome.error
    return outcome.ok


def test_a_slack_run_counts_every_answer_by_method_and_code_and_its_budget_wait(
    slack: SlackTestServer, cache: valkey.Valkey
) -> None:
    """One 429 (Retry-After 1 s) on usergroups.list: counted as code "429", the retry as "200", and
    the shared budget's wait for it (the 429 blocked the method for everyone) as seconds waited."""
    settings = Settings(rate_limit_inline_wait_seconds=5, slack_rate_window_seconds=0.01)
    slack.rate_limit("usergroups.list", 1, retry_after=1)
    requests_before = counters("reconciler_service_requests")
    waited_before = value(
        "reconciler_rate_budget_wait_seconds_total", integration=metrics.SLACK, method="usergroups.list"
    )
    assert slack_run(slack, cache, settings, asked=time.time())
    counted = requests_of(metrics.SLACK, grown(requests_before, counters("reconciler_service_requests")))
    logged = Counter((call.method, str(call.status)) for call in slack.calls)
    assert counted == logged
    assert counted[("usergroups.list", "429")] == 1 and counted[("usergroups.list", "200")] == 1
    assert counted[("usergroups.create", "200")] == 1
    waited = (
        value(
            "reconciler_rate_budget_wait_seconds_total", integration=metrics.SLACK, method="usergroups.list"
        )
        - waited_before
    )
    assert 0.5 <= waited <= 1.2  # the 1 s block, less the time the 429's round trip took


def test_a_wait_longer_than_a_worker_may_sleep_counts_a_deferral(
    slack: SlackTestServer, cache: valkey.Valkey
) -> None:
    settings = Settings(rate_limit_inline_wait_seconds=0.5, slack_rate_window_seconds=0.01)
    slack.rate_limit("usergroups.list", 1, retry_after=30)
    labels = {"integration": metrics.SLACK, "method": "usergroups.list"}
    deferred_before = value("reconciler_rate_budget_deferred_total", **labels)
    waited_before = value("reconciler_rate_budget_wait_seconds_total", **labels)
    with pytest.raises(RateLimited):
        slack_run(slack, cache, settings, asked=time.time())
    assert value("reconciler_rate_budget_deferred_total", **labels) - deferred_before == 1
    assert value("reconciler_rate_budget_wait_seconds_total", **labels) == waited_before  # no sleep
    assert value("reconciler_service_requests_total", code="429", **labels) >= 1


def test_the_budget_counts_its_waits_and_deferrals_by_the_labels_it_is_given(cache: valkey.Valkey) -> None:
    key = f"acct-{uuid.uuid4().hex}:m"
    labels = {"integration": "test", "method": "m"}
    budget = RateBudget(cache, max_wait=0.5)
    waited, deferred = (
        value("reconciler_rate_budget_wait_seconds_total", **labels),
        value("reconciler_rate_budget_deferred_total", **labels),
    )
    budget.acquire(key, 1, 0.3, "m", integration="test", method="m")
    budget.acquire(key, 1, 0.3, "m", integration="test", method="m")  # waits out the window
    slept = value("reconciler_rate_budget_wait_seconds_total", **labels) - waited
    assert slept == pytest.approx(budget.waited) and 0.2 <= slept <= 0.4
    budget.block(key, 30)
    with pytest.raises(RateLimited):
        budget.acquire(key, 1, 0.3, "m", integration="test", method="m")
    assert value("reconciler_rate_budget_deferred_total", **labels) - deferred == 1


def test_slack_attempts_without_an_answer_count_as_errors_retries_included() -> None:
    dead = f"http://127.0.0.1:{free_port()}/api/"
    client = SlackClient(SecretStr(SLACK_TOKEN), dead, Settings(transient_retries=1))
    before = value(
        "reconciler_service_requests_total",
        integration=metrics.SLACK,
        method="conversations.list",
        code="error",
    )
    with pytest.raises(TransientError):
        client.list_channels()
    after = value(
        "reconciler_service_requests_total",
        integration=metrics.SLACK,
        method="conversations.list",
        code="error",
    )
    assert after - before == 2  # the first attempt and its retry


def test_a_body_cut_short_counts_as_no_answer(slack: SlackTestServer, gitlab: GitLabTestServer) -> None:
    """The status line came, the body did not (all of it): no answer, for both clients."""
    slack.answer_raw("conversations.list", 1, b'{"ok": true, "chan', truncated=True)
    gitlab.answer_raw(1, b'{"id": 1, "user', path_prefix="/user", truncated=True)
    cut = {
        (metrics.SLACK, "conversations.list"): lambda: SlackClient(
            SecretStr(SLACK_TOKEN), slack.api_url, Settings(transient_retries=0)
        ).list_channels(),
        (metrics.GITLAB, "GET /user"): lambda: GitlabClient(
            gitlab.url, SecretStr(GITLAB_TOKEN), Settings(transient_retries=0)
        ).current_user(),
    }
    for (integration, method), call in cut.items():
        before = counters("reconciler_service_requests")
        with pytest.raises(TransientError):
            call()
        counted = requests_of(integration, grown(before, counters("reconciler_service_requests")))
        assert counted == Counter({(method, "error"): 1})
    # Both servers did answer 200, only not the whole body.
    assert [(c.method, c.status) for c in slack.calls] == [("conversations.list", 200)]
    assert [(c.method, c.path, c.status) for c in gitlab.calls] == [("GET", "/api/v4/user", 200)]


def gitlab_run(gitlab: GitLabTestServer, cache: valkey.Valkey, *, asked: float) -> bool:
    spec = ReconcileSpec.model_validate(
        {
            "integration": "gitlab-members",
            "credentials": {"secretRef": {"name": "gitlab-token"}},
            "gitlabMembers": {
                "url": gitlab.url,
                "groups": [
                    {
                        "path": f"{SECRET_GROUP}/team",
                        "members": [{"username": "alice", "accessLevel": "developer"}],
                    }
                ],
            },
        }
    )
    settings = Settings(transient_retries=2)
    fleet = Fleet.create(cache, settings, fresh_after=asked)
    return run_integration(spec, SecretStr(GITLAB_TOKEN), settings, dry_run=False, fleet=fleet).ok


def test_a_gitlab_run_counts_bounded_method_names_never_a_path(
    gitlab: GitLabTestServer, cache: valkey.Valkey
) -> None:
    """A 502 retried by urllib3 and a 429 retried by python-gitlab count as attempts of their own;
    every method is an endpoint's shape, never the group's path."""
    gitlab.fail(1, 502, "GET", path_prefix="/groups")
    gitlab.rate_limit(1, retry_after=0, method="POST")
    before = counters("reconciler_service_requests")
    assert gitlab_run(gitlab, cache, asked=time.time())
    counted = requests_of(metrics.GITLAB, grown(before, counters("reconciler_service_requests")))
    logged = Counter((metrics.gitlab_method(c.method, c.path), str(c.status)) for c in gitlab.calls)
    assert counted == logged
    assert counted[("GET /groups/:id/members", "502")] == 1
    assert counted[("GET /groups/:id/members", "200")] == 1
    assert counted[("POST /groups/:id/members", "429")] == 1
    assert counted[("POST /groups/:id/members", "201")] == 1
    assert counted[("GET /user", "200")] >= 1
    for labels in counters("reconciler_service_requests"):
        assert not any(SECRET_GROUP in v or "%2F" in v for _, v in labels)
    for labels in counters("reconciler_rate_budget_wait_seconds") | counters(
        "reconciler_rate_budget_deferred"
    ):
        assert not any(SECRET_GROUP in v or "127.0.0.1" in v for _, v in labels)


def test_gitlab_attempts_without_an_answer_count_as_errors_retries_included() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client = GitlabClient(dead, SecretStr(GITLAB_TOKEN), Settings(transient_retries=2))
    labels = {"integration": metrics.GITLAB, "method": "GET /user", "code": "error"}
    before = value("reconciler_service_requests_total", **labels)
    with pytest.raises(TransientError):
        client.current_user()
    client.close()
    assert value("reconciler_service_requests_total", **labels) - before == 3


def test_gitlab_method_names_are_bounded() -> None:
    shapes = {
        (
            "get",
            "https://gl.example/api/v4/groups/a%2Fb%2Fc/members?per_page=100&page=2",
        ): "GET /groups/:id/members",
        ("PUT", "/gitlab/api/v4/projects/x%2Fy/members/42"): "PUT /projects/:id/members/:user_id",
        ("DELETE", "/groups/acme/members/7"): "DELETE /groups/:id/members/:user_id",
        ("GET", "https://gl.example/api/v4/users?username=alice"): "GET /users",
        ("GET", "https://evil.example/api/v4/groups/a/b/c/d/e"): "GET other",
        ("BREW", "https://gl.example/api/v4/user"): "other /user",
        (None, None): "other other",
    }
    for (verb, url), shape in shapes.items():
        assert metrics.gitlab_method(verb, url) == shape
    assert metrics.slack_method(
        "https://slack.example/api/usergroups.users.update", "https://slack.example/api/"
    ) == ("usergroups.users.update")
    assert (
        metrics.slack_method("https://slack.example/api/x/../../etc", "https://slack.example/api/") == "other"
    )
    assert (
        metrics.slack_method("https://slack.example/api/users.list?cursor=abc", "https://slack.example/api/")
        == "users.list"
    )


def test_threads_asking_one_shared_read_count_one_fetch_and_the_rest_shared(cache: valkey.Valkey) -> None:
    n, key, read = 6, f"reconciler:test:{uuid.uuid4().hex}", f"test_{uuid.uuid4().hex[:8]}"
    asked = time.time()
    barrier = threading.Barrier(n)

    def fetch(stamp: ReadStamp) -> ReadStamp:
        time.sleep(0.2)  # the others ask meanwhile
        return stamp

    def worker() -> None:
        reads = SharedReads(cache, wait_seconds=10, ttl_seconds=60)  # one per run, as runs have
        barrier.wait()
        reads.fresh(key, asked, (), fetch, read=read)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert value("reconciler_shared_reads_total", read=read, outcome="fetched") == 1
    assert value("reconciler_shared_reads_total", read=read, outcome="shared") == n - 1


def test_runs_count_the_slack_reads_they_fetch_and_the_ones_they_share(
    slack: SlackTestServer, cache: valkey.Valkey
) -> None:
    """The first run fetches the user groups and sweeps the directory; a run asked before those
    reads started uses them as they are (the fast path, no `fresh`): shared."""
    settings = Settings(slack_rate_window_seconds=0.01)
    kinds = ("slack_usergroups", "slack_directory_sweep")
    before = counters("reconciler_shared_reads")
    assert slack_run(slack, cache, settings, asked=time.time())
    first = grown(before, counters("reconciler_shared_reads"))
    assert {dict(k)["read"]: (dict(k)["outcome"], v) for k, v in first.items()} == {
        kind: ("fetched", 1.0) for kind in kinds
    }
    before = counters("reconciler_shared_reads")
    assert slack_run(slack, cache, settings, asked=0.0)
    second = grown(before, counters("reconciler_shared_reads"))
    assert {dict(k)["read"]: (dict(k)["outcome"], v) for k, v in second.items()} == {
        kind: ("shared", 1.0) for kind in kinds
    }


def test_runs_count_the_gitlab_member_listing_they_fetch_and_share(
    gitlab: GitLabTestServer, cache: valkey.Valkey
) -> None:
    labels = {"read": "gitlab_members"}
    fetched, shared = (
        value("reconciler_shared_reads_total", outcome="fetched", **labels),
        value("reconciler_shared_reads_total", outcome="shared", **labels),
    )
    assert gitlab_run(gitlab, cache, asked=time.time())
    assert value("reconciler_shared_reads_total", outcome="fetched", **labels) - fetched == 1
    assert gitlab_run(gitlab, cache, asked=0.0)
    assert value("reconciler_shared_reads_total", outcome="fetched", **labels) - fetched == 1
    assert value("reconciler_shared_reads_total", outcome="shared", **labels) - shared == 1
