"""The Reconcile object itself, read and patched from a worker thread during a run (sync, kubehttp).

Kopf writes status only when a handler returns; two things cannot wait that long: a run queued
behind another run of the same Reconcile must use the newest spec (so it re-reads the object
before it starts; a run that waited for nobody has Kopf's newest body already, and reads nothing),
and a pipeline must see which task is running while it runs (`status.taskId`, `Reconciling=True`;
sent beside the run, not before it, and always landed before Kopf writes the final status; a new
generation queued behind busy workers gets it when queued, with its pending record, instead).
Both are best effort: when the API is not reachable the run goes on with what Kopf gave it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from reconciler.models.task import ReconcileRef
from reconciler_operator import conditions, observability
from reconciler_operator.executor import FreshObject
from reconciler_operator.kubehttp import KubeHttp, KubeHttpError

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "reconciler.dev", "v1alpha1", "reconciles"
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
RUNNING_PATCH_WAIT_SECONDS = 60.0
"""Bound on waiting for the "running" status patch at a run's end (the client's timeouts end it sooner)."""


class ObjectLock:
    """One run at a time per Reconcile inside this process (timer vs. change handlers).

    `async with lock as queued`: `queued` is True when another run of this Reconcile held or awaited
    the lock first, so the body Kopf handed over may be older than the object by the time this run
    starts: that run re-reads it. A run that waited for nobody has Kopf's newest body (Kopf handles
    one object's events one after the other, so a newer spec gets its own run after this one)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._users = 0

    async def __aenter__(self) -> bool:
        queued = self._users > 0
        self._users += 1
        try:
            await self._lock.acquire()
        except BaseException:
            self._users -= 1
            raise
        return queued

    async def __aexit__(self, *_: object) -> None:
        self._lock.release()
        self._users -= 1


class RunningMark:
    """The "running" status patch in flight beside the run; `wait()` before Kopf writes the final
    status, so the older patch can never land after it."""

    def __init__(self, sending: Future[None] | None = None) -> None:
        self._sending = sending

    def wait(self) -> None:
        if self._sending is None:
            return
        try:
            self._sending.result(RUNNING_PATCH_WAIT_SECONDS)
        except TimeoutError:
            log.warning("the running-status patch is still in flight after %ss", RUNNING_PATCH_WAIT_SECONDS)

    async def landed(self) -> None:
        if self._sending is None:
            return
        try:
            await asyncio.wait_for(asyncio.wrap_future(self._sending), RUNNING_PATCH_WAIT_SECONDS)
        except TimeoutError:
            log.warning("the running-status patch is still in flight after %ss", RUNNING_PATCH_WAIT_SECONDS)


class ReconcileObjects:
    def __init__(self, client: Callable[[], KubeHttp | None], mark_threads: int = 4) -> None:
        self._client = client
        # Long-lived threads (starting one per run waited for a GIL hand-off while Kopf was busy),
        # as many as runs at once (the operator's workers), so no mark waits behind another.
        self._marks = ThreadPoolExecutor(max_workers=mark_threads, thread_name_prefix="mark-running")

    def read(self, ref: ReconcileRef) -> FreshObject | None:
        """The newest spec and generation; None when unknown (not logged in, API down, deleted)."""
        client = self._client()
        if client is None:
            return None
        try:
            response = client.get(_path(ref))
            if response.status_code != 200:
                return None
            body = response.json()
        except (KubeHttpError, ValueError) as exc:
            log.info("could not re-read %s (%s); running the spec Kopf gave", ref.key, _kind(exc))
            return None
        if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
            return None
        meta = body.get("metadata") or {}
        status = body.get("status")
        return FreshObject(
            spec=body["spec"],
            generation=int(meta.get("generation") or 0),
            status=status if isinstance(status, dict) else {},
        )

    def exists(self, namespace: str, name: str, uid: str) -> bool:
        """False only when the API answers that Reconcile `namespace/name` with `uid` is gone (404, or
        a namesake with another uid): a claim it holds is stale. Any doubt (not logged in, API error,
        forbidden) counts as alive, so a live owner's claim is never taken."""
        client = self._client()
        if client is None:
            return True
        try:
            response = client.get(_path(ReconcileRef(namespace=namespace, name=name)))
            if response.status_code == 404:
                return False
            if response.status_code != 200:
                return True
            found = (response.json().get("metadata") or {}).get("uid")
        except (KubeHttpError, ValueError, AttributeError):
            return True
        return found is None or found == uid

    def mark_running(
        self, ref: ReconcileRef, status: dict[str, Any], task_id: str, trigger: str
    ) -> RunningMark:
        """Start patching `status.taskId` (the run now) and `Reconciling=True` (best effort); the run
        goes on meanwhile and waits for the returned mark only at its end."""
        return RunningMark(self._marks.submit(self._patch_running, ref, status, task_id, trigger))

    def mark_queued(
        self,
        ref: ReconcileRef,
        status: dict[str, Any],
        task_id: str,
        trigger: str,
        *,
        workers: int,
        record: Callable[[], None],
    ) -> RunningMark:
        """A new generation whose run must wait for a worker: `record()` (its pending task record),
        then Ready=Unknown with `status.taskId` naming the task (kstatus reads a Reconcile without
        conditions as current; a pipeline can follow the task from now on). Best effort, like the
        running mark, which the run then skips: this patch said it already."""

        def send() -> None:
            record()
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            queued = conditions.queued(
                status, task_id, trigger, generation=ref.generation, workers=workers, now=now
            )
            self._patch_status(ref, "queued", queued)

        return RunningMark(self._marks.submit(send))

    def close(self) -> None:
        self._marks.shutdown(wait=False, cancel_futures=True)

    def _patch_running(self, ref: ReconcileRef, status: dict[str, Any], task_id: str, trigger: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._patch_status(
            ref, "running", conditions.running(status, task_id, trigger, generation=ref.generation, now=now)
        )

    def _patch_status(self, ref: ReconcileRef, what: str, status: dict[str, Any]) -> None:
        client = self._client()
        if client is None:
            return
        try:
            response = client.patch(f"{_path(ref)}/status", json={"status": status}, headers=MERGE_PATCH)
        except KubeHttpError as exc:
            log.info("could not mark %s %s (%s)", ref.key, what, exc)
            return
        if response.status_code >= 400:
            log.info("could not mark %s %s: HTTP %s", ref.key, what, response.status_code)
            return
        observability.observe_status(ref.namespace, ref.name, status)


def _kind(exc: Exception) -> str:
    """What failed: the connection's kind (KubeHttpError says it), or the decoding error's type."""
    return str(exc) if isinstance(exc, KubeHttpError) else type(exc).__name__


def _path(ref: ReconcileRef) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{quote(ref.namespace)}/{PLURAL}/{quote(ref.name)}"
