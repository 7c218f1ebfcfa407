"""Kopf handlers: when to run a Reconcile, and what its status says afterwards.

Handlers are async and only do bookkeeping on the event loop; every run (Slack/GitLab calls, Secret
reads, Valkey writes) goes to the bounded worker pool, so the loop stays responsive while all
workers are busy. A changed spec first gets `Ready=Unknown` (its own handler, applied before the
run starts: Kopf's default lifecycle runs one handler per cycle and patches in between). A new
Reconcile has no Ready to be stale: its run's "running" patch says Ready=Unknown, which spares
every creation a Kopf cycle, two writes and the watch events they cause; only when every worker
is busy (the run would start late) is Ready=Unknown patched at once, before the run is queued, and
that patch names the (pending) task, so the run sends no "running" patch: two status writes per
creation either way.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import kopf

from reconciler.claims import claims_status
from reconciler.integrations.registry import INTEGRATIONS
from reconciler.models.spec import parse_duration
from reconciler.models.task import ReconcileRef, TaskRecord, new_task_id
from reconciler.settings import get_settings
from reconciler_operator import conditions, observability
from reconciler_operator.context import OperatorContext, configure_kopf, watch_loop_lag
from reconciler_operator.deletion import DeleteReport, DeleteRequest
from reconciler_operator.executor import RunRequest
from reconciler_operator.sharding import shard_filter

GROUP, VERSION, PLURAL = "reconciler.dev", "v1alpha1", "reconciles"
RESOURCE = (GROUP, VERSION, PLURAL)
REQUESTED_AT = "reconciler.dev/requested-at"
FLUX_REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"

log = logging.getLogger(__name__)

SHARD = shard_filter(get_settings().shard_selector)
"""Kopf label filter of every Reconcile handler: this operator's shard (None: all Reconciles)."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _requested_at(meta: Mapping[str, Any]) -> str | None:
    annotations = meta.get("annotations") or {}
    value = annotations.get(REQUESTED_AT) or annotations.get(FLUX_REQUESTED_AT)
    return str(value) if value else None


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = get_settings()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, _warm_up_integrations)
    context = await loop.run_in_executor(None, OperatorContext.create, config)
    configure_kopf(settings, config, context.pool)
    memo["context"] = context
    memo["loop_lag"] = asyncio.create_task(watch_loop_lag())
    context.start_background()
    observability.watch_leadership()
    # What lives as long as the process (modules, classes, Kopf's registry, this context: ~75,000
    # objects) leaves the collector's generations: each full collection scanned them all, ~100 ms
    # with every thread stopped, twice in P5's 9 s (GC there: 270-415 -> 170-200 ms; longest pause
    # 95 -> 38 ms).
    gc.freeze()


def _warm_up_integrations() -> None:
    for integration in INTEGRATIONS.values():
        integration.warm_up()


@kopf.on.login()
def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """Log in as Kopf would (the official client if installed: exec plugins; else in-cluster
    service account or a plain kubeconfig) and share the credentials with the Secret reader."""
    if importlib.util.find_spec("kubernetes") is not None:
        connection = kopf.login_via_client(**kwargs)
    else:
        connection = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    context: OperatorContext | None = memo.get("context")
    if connection is not None and context is not None:
        context.secrets.use(connection)
    return connection


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    lag_task: asyncio.Task[None] | None = memo.get("loop_lag")
    if lag_task is not None:
        lag_task.cancel()
    context: OperatorContext | None = memo.get("context")
    if context is not None:
        await asyncio.get_running_loop().run_in_executor(None, context.close)


def _write_status(body: kopf.Body, patch: kopf.Patch, status: dict[str, Any]) -> None:
    """Kopf writes `status` when the handler returns; its conditions are exported as metrics now."""
    patch.status.update(status)
    observability.observe_status(str(body.meta["namespace"]), str(body.meta["name"]), status)


# --- changed spec: Ready=Unknown before anything else ---------------------------------------------


@kopf.on.update(*RESOURCE, field="spec", id="progressing-update", labels=SHARD)
async def mark_progressing(
    body: kopf.Body, spec: kopf.Spec, status: kopf.Status, patch: kopf.Patch, **_: Any
) -> None:
    generation = int(body.meta.get("generation") or 0)
    if spec.get("suspend"):
        _write_status(body, patch, conditions.suspended(status, generation=generation, now=_now()))
        return
    _write_status(body, patch, conditions.progressing(status, generation=generation, now=_now()))


# --- runs ----------------------------------------------------------------------------------------


@kopf.on.create(*RESOURCE, id="run", labels=SHARD)
async def run_on_create(**kwargs: Any) -> None:
    await _reconcile("create", **kwargs)


@kopf.on.update(*RESOURCE, field="spec", id="run-update", labels=SHARD)
async def run_on_update(**kwargs: Any) -> None:
    await _reconcile("update", **kwargs)


@kopf.on.resume(*RESOURCE, id="run-resume", labels=SHARD)
async def run_on_resume(**kwargs: Any) -> None:
    await _reconcile("resume", **kwargs)


@kopf.on.update(*RESOURCE, field=("metadata", "annotations", REQUESTED_AT), id="run-requested", labels=SHARD)
@kopf.on.update(
    *RESOURCE, field=("metadata", "annotations", FLUX_REQUESTED_AT), id="run-requested-flux", labels=SHARD
)
async def run_on_request(new: Any, status: kopf.Status, **kwargs: Any) -> None:
    if not new or str(new) == status.get("lastHandledRequestedAt"):
        return
    await _reconcile("requested", status=status, **kwargs)


def _has_timer_work(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    """Only a Reconcile with an interval, or stalled on `Conflict`, has a timer: Kopf re-checks this on
    every watch event (starting or stopping the timer), so the others cost no tick every few seconds
    (500 such Reconciles were 100 timer invocations a second on the event loop)."""
    return bool(spec.get("interval")) or _stalled_on_conflict(status)


@kopf.timer(
    *RESOURCE,
    interval=get_settings().interval_check_seconds,
    id="interval",
    labels=SHARD,
    when=_has_timer_work,
)
async def run_on_interval(spec: kopf.Spec, status: kopf.Status, body: kopf.Body, **kwargs: Any) -> None:
    if _conflict_retry_due(spec, status):
        await _reconcile("conflict", spec=spec, status=status, body=body, raise_transient=False, **kwargs)
        return
    interval = spec.get("interval")
    if not interval or spec.get("suspend") or not status.get("lastRunTime"):
        return
    context: OperatorContext = kwargs["memo"]["context"]
    if context.rate_limited(str(body.meta.get("uid"))):
        return  # the service asked to wait: no interval run before the time the status names
    try:
        every = max(parse_duration(str(interval)), timedelta(seconds=get_settings().min_interval_seconds))
    except ValueError:
        return  # an invalid interval is reported by the run it belongs to (InvalidSpec)
    last = datetime.fromisoformat(str(status["lastRunTime"]).replace("Z", "+00:00"))
    if datetime.now(UTC) < last + every:
        return
    stalled: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == conditions.STALLED), {}
    )
    if (
        stalled.get("status") == "True"
        and stalled.get("reason") == "InvalidSpec"
        and status.get("observedGeneration") == body.meta.get("generation")
    ):
        return  # only a new generation can fix an invalid spec
    await _reconcile("interval", spec=spec, status=status, body=body, raise_transient=False, **kwargs)


def _conflict_retry_due(spec: kopf.Spec, status: kopf.Status) -> bool:
    """A Reconcile stalled on `Conflict` tries again every `conflict_retry_seconds` (its interval may
    come sooner), so it takes a released target over without a hot loop and without an interval."""
    if spec.get("suspend") or not _stalled_on_conflict(status):
        return False
    if not status.get("lastRunTime"):
        return False
    last = datetime.fromisoformat(str(status["lastRunTime"]).replace("Z", "+00:00"))
    return datetime.now(UTC) >= last + timedelta(seconds=get_settings().conflict_retry_seconds)


def _stalled_on_conflict(status: kopf.Status) -> bool:
    stalled: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == conditions.STALLED), {}
    )
    return stalled.get("status") == "True" and stalled.get("reason") == "Conflict"


def _request_time(started: datetime | None) -> float:
    """When the run was asked for: a retry keeps its handler's first start (Kopf's `started`), so
    that it may use the shared reads its earlier tries made after the request (and its own writes
    through them) instead of reading everything again."""
    now = datetime.now(UTC)
    if started is None:
        return now.timestamp()
    if started.tzinfo is None:  # Kopf keeps naive UTC times in its progress annotations
        started = started.replace(tzinfo=UTC)
    return min(started, now).timestamp()


async def _reconcile(
    trigger: str,
    *,
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    retry: int = 0,
    started: datetime | None = None,
    raise_transient: bool = True,
    **_: Any,
) -> None:
    """Run once (in the worker pool), then write status, post an event, and retry if transient."""
    context: OperatorContext = memo["context"]
    meta = body.meta
    generation = int(meta.get("generation") or 0)
    if spec.get("suspend"):
        _write_status(body, patch, conditions.suspended(status, generation=generation, now=_now()))
        return

    ref = ReconcileRef(namespace=str(meta["namespace"]), name=str(meta["name"]), generation=generation)
    request = RunRequest(
        ref=ref,
        raw_spec=dict(spec),
        trigger=trigger,
        task_id=new_task_id(),
        status=dict(status),
        uid=str(meta.get("uid") or ""),
        requested=_request_time(started),
    )
    async with context.object_lock(str(meta.get("uid") or ref.key)) as queued:
        request = replace(request, queued=queued)
        if status.get("observedGeneration") != generation and context.workers_busy():
            # A new Reconcile whose run waits for a worker: Ready=Unknown now, not when the run
            # starts (kstatus would read its empty status as current meanwhile); the same write names
            # its task (recorded as pending), so the run sends no "running" patch of its own.
            mark = context.objects.mark_queued(
                ref,
                dict(status),
                request.task_id,
                trigger,
                workers=context.settings.max_workers,
                record=partial(context.run_executor.record_pending, request),
            )
            request = replace(request, named=True, queued_mark=mark)
        loop = asyncio.get_running_loop()
        context.runs_submitted += 1
        try:
            report = await loop.run_in_executor(context.pool, context.run, request)
        finally:
            context.runs_submitted -= 1
        if report.running_mark is not None:
            await report.running_mark.landed()  # before Kopf writes the final status

    record, error = report.record, report.error
    if record is None:
        if error is None:
            return  # the newest spec is suspended: nothing to do (its own update handler says so)
        # The run could not start (cache down, lock busy): nothing was done; say so and retry.
        delay = context.backoff(retry, error)
        _write_status(
            body,
            patch,
            conditions.not_started(status, error, generation=generation, retry_in=delay, now=_now()),
        )
        kopf.event(
            body, type="Warning", reason=error.reason, message=f"{error.message}; retrying in {delay:.0f}s"
        )
        if raise_transient:
            raise kopf.TemporaryError(error.message, delay=delay)
        return

    retry_in = context.backoff(retry, error) if error is not None and not error.permanent else None
    if error is not None and error.reason == "RateLimited" and retry_in is not None:
        context.hold_rate_limited(str(meta.get("uid") or ref.key), retry_in)
    claims = claims_status(report.claims) if report.claims is not None else None
    _write_status(
        body,
        patch,
        conditions.finished(
            status, record, retry_in=retry_in, requested_at=_requested_at(meta), now=_now(), claims=claims
        ),
    )
    context.count_run(record.integration, record.status.value)
    if error is not None:
        observability.RUN_ERRORS.labels(record.integration or "unknown", error.reason).inc()
    _post_event(body, record)
    if error is not None and retry_in is not None and raise_transient:
        raise kopf.TemporaryError(f"{error.reason}: {error.message}", delay=retry_in)


# --- deletion ------------------------------------------------------------------------------------


@kopf.on.delete(*RESOURCE, id="delete", labels=SHARD)
async def on_delete(body: kopf.Body, spec: kopf.Spec, memo: kopf.Memo, retry: int, **_: Any) -> None:
    """Apply `spec.deletionPolicy` and release the claims (in the worker pool) before Kopf removes
    the finalizer. Transient failures are retried with backoff, at most `delete_retries` times."""
    context: OperatorContext = memo["context"]
    meta = body.meta
    ref = ReconcileRef(
        namespace=str(meta["namespace"]), name=str(meta["name"]), generation=int(meta.get("generation") or 0)
    )
    uid = str(meta.get("uid") or "")
    final = retry >= get_settings().delete_retries
    request = DeleteRequest(ref=ref, uid=uid, raw_spec=dict(spec), final=final)
    async with context.object_lock(uid or ref.key):
        report = await asyncio.get_running_loop().run_in_executor(context.pool, context.delete, request)
    _post_delete_event(body, report, final)
    if not report.retry or final:
        observability.forget(ref.namespace, ref.name)  # Kopf removes the finalizer now
    if report.retry and not final:
        assert report.error is not None
        raise kopf.TemporaryError(report.error.message, delay=context.backoff(retry, report.error))


def _post_delete_event(body: kopf.Body, report: DeleteReport, final: bool) -> None:
    parts = [report.note] if report.note else []
    if report.done:
        parts.append("done: " + ", ".join(f"{a.type} {a.target}" for a in report.done[:20]))
    if report.skipped:
        parts.append("left alone (another Reconcile owns them): " + "; ".join(report.skipped[:20]))
    if report.released:
        parts.append(f"released {len(report.released)} claim(s)")
    error = report.error
    if error is None:
        kopf.event(body, type="Normal", reason="Deleted", message="; ".join(parts) or "deleted")
        return
    what = "retrying" if report.retry and not final else "giving up: the targets are left as they are"
    parts.append(f"{error.reason}: {error.message} ({what})")
    kopf.event(body, type="Warning", reason="DeletionFailed", message="; ".join(parts))


def _post_event(body: kopf.Body, record: TaskRecord) -> None:
    error = record.error
    if error is None:
        planned = len(record.actions)
        what = (
            f"planned {planned} action(s), dry run"
            if record.dry_run
            else f"applied {record.applied} of {planned} action(s)"
        )
        kopf.event(body, type="Normal", reason="Succeeded", message=f"Task {record.task_id}: {what}")
    else:
        kopf.event(
            body, type="Warning", reason=error.reason, message=f"Task {record.task_id}: {error.message}"
        )
