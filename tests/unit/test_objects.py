"""The Reconcile object during a run: who waited behind whom (re-read or not), and the "running"
status patch sent beside the run, landed before the run returns (issue #9 P5, #11's guarantees)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import aiohttp.web
import kopf
import pytest

from reconciler.models.task import ReconcileRef
from reconciler_operator.kubehttp import KubeHttp
from reconciler_operator.objects import ObjectLock, ReconcileObjects
from tests import builders
from tests.kube import ApiServerEmulator, KubeApi, condition

NS = "objects"


def test_a_run_is_queued_only_behind_another_run_of_the_same_reconcile() -> None:
    async def scenario() -> list[tuple[str, bool]]:
        lock, seen = ObjectLock(), []
        release = asyncio.Event()

        async def run(name: str, hold: bool = False) -> None:
            async with lock as queued:
                seen.append((name, queued))
                if hold:
                    await release.wait()

        async with lock as queued:
            seen.append(("alone", queued))
        first = asyncio.create_task(run("first", hold=True))
        await asyncio.sleep(0)
        second = asyncio.create_task(run("behind the first"))
        cancelled = asyncio.create_task(run("cancelled while waiting"))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(first, second)
        async with lock as queued:  # the cancelled waiter left no trace
            seen.append(("alone again", queued))
        return seen

    assert asyncio.run(scenario()) == [
        ("alone", False),
        ("first", False),
        ("behind the first", True),
        ("alone again", False),
    ]


class HeldStatusPatches(ApiServerEmulator):
    """Holds every status PATCH until the test lets it through."""

    release: threading.Event = threading.Event()

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.method == "PATCH" and raw_request.path.endswith("/status"):
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 10)
        return await super().__call__(raw_request)


@pytest.fixture
def held_kube() -> Iterator[KubeApi]:
    HeldStatusPatches.release = threading.Event()
    kube = KubeApi(HeldStatusPatches).start()
    kube.add_namespace(NS)
    try:
        yield kube
    finally:
        HeldStatusPatches.release.set()
        kube.stop()


def test_the_running_patch_travels_beside_the_run_and_has_landed_when_waited_for(held_kube: KubeApi) -> None:
    body = builders.slack_reconcile("beside", NS, "http://127.0.0.1:9", [{"handle": "h", "users": []}])
    created = held_kube.create_reconcile(body)
    client = KubeHttp.from_connection(kopf.ConnectionInfo(server=held_kube.url), timeout=15)
    objects = ReconcileObjects(lambda: client)
    try:
        ref = ReconcileRef(namespace=NS, name="beside", generation=int(created["metadata"]["generation"]))
        mark = objects.mark_running(ref, {}, "task-1", "create")  # returns while the PATCH is held
        assert "taskId" not in (held_kube.get_reconcile(NS, "beside").get("status") or {})
        HeldStatusPatches.release.set()
        mark.wait()
        marked = held_kube.get_reconcile(NS, "beside")
        # The handler's way: awaited on the event loop once the worker is free.
        asyncio.run(objects.mark_running(ref, marked["status"], "task-2", "requested").landed())
        again = held_kube.get_reconcile(NS, "beside")
    finally:
        objects.close()
        client.close()
    assert marked["status"]["taskId"] == "task-1"
    assert condition(marked, "Reconciling")["reason"] == "Running"
    assert condition(marked, "Ready")["status"] == "Unknown"  # a new Reconcile: generation observed now
    assert (
        again["status"]["taskId"] == "task-2"
        and "trigger requested" in condition(again, "Reconciling")["message"]
    )
