"""RunExecutor: one run of one Reconcile, from its lock to its finished task record.

Real parts only: a real valkey-server holds the locks and records, the real Slack client talks to the
Slack test server. The Kubernetes side (Secret reads, the object's re-read and its `taskId` patch) is
injected through the executor's constructor: small recording sources, as the operator passes its own.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
from pydantic import SecretStr

from reconciler.cache.valkey import ValkeyCache
from reconciler.errors import CredentialsNotFound
from reconciler.models.spec import SecretRef
from reconciler.models.task import ReconcileRef, TaskError, TaskRecord, TaskStatus, new_task_id
from reconciler.settings import Settings
from reconciler.tasks import TaskStore, lock_key
from reconciler_operator.executor import FreshObject, RunExecutor, RunReport, RunRequest
from reconciler_operator.objects import RunningMark
from reconciler_testing.slack import SlackTestServer
from tests.builders import slack_reconcile
from tests.valkey_server import ValkeyProcess, free_port

TOKEN = "test-slack-token-for-the-executor"
ALICE = "alice@example.com"
NAMES = itertools.count()
PLAN = ["create_usergroup", "add_users"]
"""What a new group with one user takes."""


class Tokens:
    """The Secret `slack-bot` holds TOKEN; any other Secret is missing."""

    def read_token(self, namespace: str, ref: SecretRef) -> SecretStr:
        if ref.name != "slack-bot":
            raise CredentialsNotFound(f"Secret {namespace}/{ref.name} does not exist")
        return SecretStr(TOKEN)


class Landed:
    def wait(self) -> None:
        """The patch below is recorded at once."""

    async def landed(self) -> None:
        """The same, for the handler."""


class Objects:
    """The Reconcile as the API server has it (`fresh`, None: unknown), and the `taskId` patches."""

    def __init__(self, store: TaskStore, fresh: FreshObject | None = None) -> None:
        self.store, self.fresh = store, fresh
        self.reads: list[ReconcileRef] = []
        self.running: list[tuple[str, str, TaskStatus | None]] = []
        """(task id, trigger, the task's stored status when status named it)."""

    def read(self, ref: ReconcileRef) -> FreshObject | None:
        self.reads.append(ref)
        return self.fresh

    def mark_running(self, ref: ReconcileRef, status: dict[str, Any], task_id: str, trigger: str) -> Landed:
        stored = self.store.get(task_id)
        self.running.append((task_id, trigger, stored.status if stored else None))
        return Landed()


@pytest.fixture
def slack() -> Iterator[SlackTestServer]:
    with SlackTestServer() as server:
        server.add_token(TOKEN)
        server.add_user(ALICE)
        yield server


@pytest.fixture
def settings(valkey_server: ValkeyProcess) -> Settings:
    return Settings(
        valkey_url=valkey_server.url,
        allowed_hosts="127.0.0.1",
        enforce_allowed_hosts=True,
        shared_cache=False,
        http_timeout_seconds=5,
        transient_retries=0,
        lock_ttl_seconds=5,
    )


@pytest.fixture
def store(settings: Settings) -> TaskStore:
    assert settings.valkey_url is not None
    return TaskStore(ValkeyCache.from_url(settings.valkey_url), ttl_seconds=600, history_size=5)


@pytest.fixture
def ref() -> ReconcileRef:
    """A Reconcile of its own per test: the session's Valkey keeps every test's records and locks."""
    return ReconcileRef(namespace="team-sre", name=f"oncall-{next(NAMES)}", generation=1)


def spec(slack: SlackTestServer, users: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    group = {"handle": "oncall", "name": "On-call", "users": [ALICE] if users is None else users}
    spec: dict[str, Any] = slack_reconcile("oncall", "team-sre", slack.api_url, [group], **fields)["spec"]
    return spec


def run(
    executor: RunExecutor, ref: ReconcileRef, raw_spec: dict[str, Any], trigger: str = "create"
) -> RunReport:
    return executor.execute(RunRequest(ref, raw_spec, trigger, new_task_id(), status={}))


def test_a_run_goes_from_running_to_success_and_frees_the_lock(
    slack: SlackTestServer, settings: Settings, store: TaskStore, ref: ReconcileRef
) -> None:
    objects = Objects(store)
    report = run(RunExecutor(settings, store, Tokens(), objects), ref, spec(slack))

    record = report.record
    assert record is not None and report.error is None and report.not_started is None
    assert record.status is TaskStatus.SUCCESS and record.trigger == "create" and record.reconcile == ref
    assert [a.type for a in record.actions] == PLAN and record.applied == 2 and record.failed == 0
    assert record.started_at is not None and record.finished_at is not None
    assert slack.usergroup("oncall")["name"] == "On-call"
    # Status named the task while it ran, once the running record was in Valkey.
    assert objects.running == [(record.task_id, "create", TaskStatus.RUNNING)]
    assert store.get(record.task_id) == record
    assert store.history(ref.namespace, ref.name) == [record.task_id]
    assert store.cache.acquire_lock(lock_key(ref.namespace, ref.name), "next-run", 5)
    store.cache.release_lock(lock_key(ref.namespace, ref.name), "next-run")


def test_a_run_whose_lock_another_holds_does_nothing_and_is_retried(
    slack: SlackTestServer, settings: Settings, store: TaskStore, ref: ReconcileRef
) -> None:
    """Another operator (or trigger) is running this Reconcile: no record, no call, no status write
    (a run queued behind another of the same Reconcile has read the newest spec before asking)."""
    lock = lock_key(ref.namespace, ref.name)
    assert store.cache.acquire_lock(lock, "other-operator", 5)
    objects = Objects(store)
    executor = RunExecutor(settings, store, Tokens(), objects)

    report = run(executor, ref, spec(slack))

    assert report.record is None and report.claims is None
    assert report.not_started == TaskError(
        reason="RunInProgress",
        message="another run of this Reconcile is in progress; retrying after it",
        permanent=False,
    )
    assert report.error == report.not_started
    assert slack.calls == [] and objects.reads == [ref] and objects.running == []
    assert store.history(ref.namespace, ref.name) == []
    assert store.cache.extend_lock(lock, "other-operator", 5)  # still theirs: a busy run releases nothing

    store.cache.release_lock(lock, "other-operator")
    retried = run(executor, ref, spec(slack))
    assert retried.record is not None and retried.record.status is TaskStatus.SUCCESS


def test_the_newest_spec_and_generation_are_run(
    slack: SlackTestServer, settings: Settings, store: TaskStore, ref: ReconcileRef
) -> None:
    """A run queued behind another applies what the API server has now, not what Kopf saw."""
    newer = spec(slack)
    newer["slackUsergroups"]["usergroups"][0]["name"] = "On-call (renamed)"
    objects = Objects(store, FreshObject(spec=newer, generation=7, status={}))

    report = run(RunExecutor(settings, store, Tokens(), objects), ref, spec(slack))

    assert report.record is not None and report.record.reconcile.generation == 7
    assert slack.usergroup("oncall")["name"] == "On-call (renamed)"
    assert objects.reads == [ref]


def test_a_run_that_got_the_lock_at_once_runs_what_kopf_saw(
    slack: SlackTestServer, settings: Settings, store: TaskStore, ref: ReconcileRef
) -> None:
    """Nothing ran before it, so its spec cannot be stale: no re-read (one API call fewer per run)."""
    objects = Objects(store, FreshObject(spec=spec(slack, suspend=True), generation=7, status={}))
    executor = RunExecutor(settings, store, Tokens(), objects)
    report = executor.execute(RunRequest(ref, spec(slack), "create", new_task_id(), status={}, queued=False))
    assert report.record is not None and report.record.reconcile.generation == ref.generation
    assert report.record.status is TaskStatus.SUCCESS and objects.reads == []
    assert [(task, trigger) for task, trigger, _ in objects.running] == [(report.record.task_id, "create")]


def test_a_run_whose_newest_spec_is_suspended_is_not_needed(
    slack: SlackTestServer, settings: Settings, store: TaskStore, ref: ReconcileRef
) -> None:
    objects = Objects(store, FreshObject(spec=spec(slack, suspend=True), generation=2, status={}))
    report = run(RunExecutor(settings, store, Tokens(), objects), ref, spec(slack))
    assert report == RunReport()
    assert slack.calls == [] and store.history(ref.namespace, ref.name) == []
    assert store.cache.acquire_lock(lock_key(ref.namespace, ref.name), "next-run", 5)


def test_a_permanent_error_reaches_the_record_as_a_permanent_task_error(
    slack: SlackTestServer, settings: Settings, store: TaskStore, ref: ReconcileRef
) -> None:
    report = run(
        RunExecutor(settings, store, Tokens()), ref, spec(slack, users=[ALICE, "nobody@example.com"])
    )

    record = report.record
    assert record is not None and record.status is TaskStatus.FAILED
    error = record.error
    assert error is not None and report.error == error and record.errors == [error]
    assert (error.reason, error.permanent, error.retry_after, error.action) == (
        "UnknownUsers",
        True,
        None,
        None,
    )
    assert "nobody@example.com" in error.message
    assert slack.write_calls() == [] and store.get(record.task_id) == record


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"slackUsergroups": None}, "InvalidSpec"),
        ({"credentials": {"secretRef": {"name": "missing"}}}, "CredentialsNotFound"),
    ],
)
def test_a_spec_that_cannot_run_fails_before_any_call(
    slack: SlackTestServer,
    settings: Settings,
    store: TaskStore,
    ref: ReconcileRef,
    fields: dict[str, Any],
    reason: str,
) -> None:
    raw = {k: v for k, v in (spec(slack) | fields).items() if v is not None}
    report = run(RunExecutor(settings, store, Tokens()), ref, raw)
    assert report.record is not None and report.record.status is TaskStatus.FAILED
    assert report.error is not None and (report.error.reason, report.error.permanent) == (reason, True)
    assert report.record.actions == [] and slack.calls == []


def test_a_failed_write_is_a_transient_error_naming_its_action(
    slack: SlackTestServer, settings: Settings, store: TaskStore, ref: ReconcileRef
) -> None:
    slack.fail("usergroups.create", times=5, status=503)
    report = run(RunExecutor(settings, store, Tokens()), ref, spec(slack))

    record = report.record
    assert record is not None and record.status is TaskStatus.FAILED
    assert (record.applied, record.failed, len(record.actions)) == (0, 1, len(PLAN))
    error = record.error
    assert error is not None and not error.permanent
    assert error.action == record.actions[0] and error.action.type == "create_usergroup"


def test_a_long_rate_limit_carries_the_services_retry_after(
    slack: SlackTestServer, settings: Settings, store: TaskStore, ref: ReconcileRef
) -> None:
    """Longer than a worker may wait in place: the run ends, and says when to try again."""
    slack.rate_limit("usergroups.list", times=5, retry_after=120)
    report = run(RunExecutor(settings, store, Tokens()), ref, spec(slack), trigger="interval")
    error = report.error
    assert error is not None and (error.reason, error.permanent, error.retry_after) == (
        "RateLimited",
        False,
        120,
    )
    assert report.record is not None and report.record.error == error and slack.write_calls() == []


def test_a_dry_run_records_its_plan_and_writes_nothing(
    slack: SlackTestServer, settings: Settings, store: TaskStore, ref: ReconcileRef
) -> None:
    report = run(RunExecutor(settings, store, Tokens()), ref, spec(slack, dryRun=True))
    record = report.record
    assert record is not None and record.status is TaskStatus.SUCCESS and record.dry_run
    assert [a.type for a in record.actions] == PLAN and record.applied == 0
    assert slack.write_calls() == [] and store.get(record.task_id) == record


def test_a_run_left_running_by_a_dead_operator_is_closed_as_interrupted(
    slack: SlackTestServer, settings: Settings, store: TaskStore, ref: ReconcileRef
) -> None:
    orphan = TaskRecord(reconcile=ref, integration="slack-usergroups", status=TaskStatus.RUNNING)
    store.save(orphan)

    report = run(RunExecutor(settings, store, Tokens()), ref, spec(slack), trigger="resume")

    closed = store.get(orphan.task_id)
    assert closed is not None and closed.status is TaskStatus.FAILED and closed.finished_at is not None
    assert [e.reason for e in closed.errors] == ["Interrupted"]
    assert report.record is not None and report.record.status is TaskStatus.SUCCESS
    assert store.history(ref.namespace, ref.name) == [report.record.task_id, orphan.task_id]


def test_a_run_without_valkey_does_not_start(
    slack: SlackTestServer, settings: Settings, ref: ReconcileRef
) -> None:
    down = TaskStore(
        ValkeyCache.from_url(f"valkey://127.0.0.1:{free_port()}/0", timeout=0.5),
        ttl_seconds=60,
        history_size=5,
    )
    report = run(RunExecutor(settings, down, Tokens()), ref, spec(slack))
    assert report.record is None and report.not_started is not None
    assert (report.not_started.reason, report.not_started.permanent) == ("CacheUnavailable", False)
    assert slack.calls == []


def test_a_task_queued_behind_busy_workers_is_pending_then_runs_without_a_running_patch(
    slack: SlackTestServer, settings: Settings, store: TaskStore, ref: ReconcileRef
) -> None:
    """The queued patch named the task already (with its pending record): the run keeps the
    record's creation time and sends no second "running" patch, unless it found a newer generation."""
    objects = Objects(store)
    executor = RunExecutor(settings, store, Tokens(), objects)
    request = RunRequest(ref, spec(slack), "create", new_task_id(), status={}, queued=False, named=True)

    executor.record_pending(request)
    pending = store.get(request.task_id)
    assert pending is not None and pending.status is TaskStatus.PENDING and pending.started_at is None
    assert pending.created_at == request.created

    report = executor.execute(request)
    assert report.record is not None and report.record.status is TaskStatus.SUCCESS
    assert report.record.created_at == request.created and report.running_mark is None
    assert objects.running == []
    assert store.history(ref.namespace, ref.name) == [request.task_id]  # one entry, not two

    newer = Objects(store, FreshObject(spec=spec(slack), generation=ref.generation + 1, status={}))
    renamed = RunRequest(ref, spec(slack), "update", new_task_id(), status={}, queued=True, named=True)
    RunExecutor(settings, store, Tokens(), newer).execute(renamed)
    assert [(task, trigger) for task, trigger, _ in newer.running] == [(renamed.task_id, "update")]


def test_a_run_waits_for_its_queued_mark_before_it_starts(
    slack: SlackTestServer, settings: Settings, store: TaskStore, ref: ReconcileRef
) -> None:
    """The queued patch and its pending record may still be in flight when a worker takes the run
    (the event loop does not wait for them): the run waits first, so the late pending record can
    never overwrite the run's own."""
    executor = RunExecutor(settings, store, Tokens(), Objects(store))
    request = RunRequest(ref, spec(slack), "create", new_task_id(), status={}, queued=False, named=True)

    def send() -> None:
        time.sleep(0.3)  # longer than the run takes
        executor.record_pending(request)

    with ThreadPoolExecutor(max_workers=1) as marks:
        mark = RunningMark(marks.submit(send))
        report = executor.execute(replace(request, queued_mark=mark))
    assert report.record is not None and report.record.status is TaskStatus.SUCCESS
    stored = store.get(request.task_id)
    assert stored is not None and stored.status is TaskStatus.SUCCESS


def test_a_pending_task_whose_newest_spec_is_suspended_ends_superseded(
    slack: SlackTestServer, settings: Settings, store: TaskStore, ref: ReconcileRef
) -> None:
    """Status named the queued task; the newest spec turned suspended meanwhile: the pending record
    ends (failed, Superseded) instead of staying pending, and nothing runs."""
    objects = Objects(store, FreshObject(spec=spec(slack, suspend=True), generation=2, status={}))
    executor = RunExecutor(settings, store, Tokens(), objects)
    request = RunRequest(ref, spec(slack), "create", new_task_id(), status={}, queued=True, named=True)
    executor.record_pending(request)

    assert executor.execute(request) == RunReport()

    closed = store.get(request.task_id)
    assert closed is not None and closed.status is TaskStatus.FAILED and closed.finished_at is not None
    assert closed.error is not None and closed.error.reason == "Superseded" and closed.error.permanent
    assert slack.calls == [] and objects.running == []
    assert store.history(ref.namespace, ref.name) == [request.task_id]
