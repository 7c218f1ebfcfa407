"""The Kubernetes API emulator (tests/kube.py) answers the same whether it routes its requests itself
(tests/kube_routes.py) or lets kmock match them: one script of API calls, both ways, compared."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import kmock
import pytest

from tests import kube_routes
from tests.kube import MAX_ANNOTATIONS_BYTES, ApiServerEmulator, KubeApi

NS, OTHER = "emu", "emu-other"
RECS = "/apis/reconciler.dev/v1alpha1"
MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


class KmockMatched(ApiServerEmulator):
    """The emulator as kmock serves it: a reaction of a test's own hands the routing back to kmock's
    matching, and kmock's own methods find the objects."""

    _serve_fetch = kmock.KubernetesEmulator._serve_fetch
    _serve_create = kmock.KubernetesEmulator._serve_create
    _serve_update = kmock.KubernetesEmulator._serve_update
    _serve_delete = kmock.KubernetesEmulator._serve_delete

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self["get /test-reaction"] << {"served": "by the test's reaction"}


class BothParses(ApiServerEmulator):
    """Parses every request the emulator's way and kmock's way and keeps the fields that differ."""

    FIELDS = ("method", "url", "params", "headers", "cookies", "body", "text", "data", "action")
    FIELDS += ("resource", "namespace", "name", "subresource")

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.parsed: list[str] = []
        self.differences: list[tuple[str, str, Any, Any]] = []

    async def __call__(self, raw_request: Any) -> Any:
        self.parsed.append(f"{raw_request.method} {raw_request.path}")
        ours = await self._parse(kube_routes._parse, raw_request)
        theirs = await self._parse(kmock.Request._parse, raw_request)
        if isinstance(ours, str) or isinstance(theirs, str):
            fields = {"outcome": (ours, theirs)}
        else:
            fields = {name: (getattr(ours, name), getattr(theirs, name)) for name in self.FIELDS}
        self.differences += [(self.parsed[-1], name, a, b) for name, (a, b) in fields.items() if a != b]
        return await super().__call__(raw_request)

    @staticmethod
    async def _parse(parse: Any, raw_request: Any) -> Any:
        """The parsed request, or the name of the error (kmock cannot parse a few paths that the
        emulator serves itself before parsing, such as the namespace list)."""
        try:
            return await parse(raw_request, id=0)
        except Exception as exc:
            return type(exc).__name__


class Watch:
    """A watch on the Reconciles of a namespace, read in a thread until `count` events came, then dropped
    by the client (a thread cannot interrupt another's blocking read)."""

    def __init__(self, url: str, path: str, count: int) -> None:
        self.events: list[dict[str, Any]] = []
        self._count = count
        self._client = httpx.Client(base_url=url, timeout=httpx.Timeout(5, read=10))
        self._response = self._client.send(
            self._client.build_request("GET", path, params={"watch": "true"}), stream=True
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self._response.iter_lines():
                if line:
                    self.events.append(json.loads(line))
                if len(self.events) >= self._count:
                    break
        except httpx.HTTPError:
            pass  # no more events: the comparison shows what is missing
        finally:
            self._response.close()
            self._client.close()

    def result(self) -> list[dict[str, Any]]:
        self._thread.join(15)
        return self.events


def _normal(value: Any) -> Any:
    """What differs by chance (uids, times, generated names, tracebacks) made equal."""
    if isinstance(value, dict):
        return {
            key: "<varies>" if key in ("uid", "creationTimestamp", "deletionTimestamp") else _normal(item)
            for key, item in value.items()
            if key != "traceback"
        }
    if isinstance(value, list):
        return [_normal(item) for item in value]
    if isinstance(value, str):
        return re.sub(r"^(kopf-event-)[0-9a-f]{5}$", r"\1<random>", value)
    return value


def _reconcile(name: str, namespace: str = NS, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "reconciler.dev/v1alpha1",
        "kind": "Reconcile",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"interval": "5m", "slack": {"usergroups": [{"handle": "a"}]}},
        **extra,
    }


def _script(kube: KubeApi) -> list[Any]:
    """Every kind of request the operator, the CLI and the tests send; each answer as (code, body)."""
    client = kube._client()
    answers: list[Any] = []

    def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = client.request(method, path, **kwargs)
        body = response.json() if response.content else None
        answers.append((method, path, response.status_code, _normal(body)))
        return body if isinstance(body, dict) else {}

    ns_recs, other_recs = f"{RECS}/namespaces/{NS}/reconciles", f"{RECS}/namespaces/{OTHER}/reconciles"
    watch = Watch(kube.url, ns_recs, count=10)
    dropped = Watch(kube.url, ns_recs, count=1)  # the client drops it: the other one goes on
    try:
        call("POST", ns_recs, json=_reconcile("one", status={"ignored": True}))
        call("POST", ns_recs, json=_reconcile("one"))  # 409: exists
        call("POST", other_recs, json=_reconcile("two", namespace=OTHER))
        call("POST", f"/api/v1/namespaces/{NS}/events", json={"metadata": {"generateName": "kopf-event-"}})
        call("POST", f"/api/v1/namespaces/{NS}/secrets", json={"metadata": {"name": "s"}, "data": {}})
        call("GET", f"/api/v1/namespaces/{NS}/secrets/s")
        call("GET", f"{ns_recs}/one")
        call("GET", f"{ns_recs}/missing")
        call("GET", ns_recs)
        call("GET", f"{RECS}/reconciles")  # every namespace
        call("GET", f"/api/v1/namespaces/{NS}/events")
        assert len(dropped.result()) == 1
        call("PATCH", f"{ns_recs}/one", json={"spec": {"interval": "1m"}}, headers=MERGE)  # generation 2
        call("PATCH", f"{ns_recs}/one", json={"metadata": {"labels": {"a": "b"}}}, headers=MERGE)
        call("PATCH", f"{ns_recs}/one", json={"status": {"ignored": True}}, headers=MERGE)
        call("PATCH", f"{ns_recs}/one/status", json={"status": {"phase": "Ready"}, "spec": {}}, headers=MERGE)
        call("PATCH", f"{ns_recs}/missing", json={"spec": {}}, headers=MERGE)
        too_big = {"metadata": {"annotations": {"a": "x" * (MAX_ANNOTATIONS_BYTES + 1)}}}
        call("PATCH", f"{ns_recs}/one", json=too_big, headers=MERGE)
        stale = [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"}]
        call("PATCH", f"{ns_recs}/one", json=stale, headers=JSON_PATCH)
        version = call("GET", f"{ns_recs}/one")["metadata"]["resourceVersion"]
        finalize = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": version},
            {"op": "add", "path": "/metadata/finalizers", "value": ["reconciler.dev/x"]},
        ]
        call("PATCH", f"{ns_recs}/one", json=finalize, headers=JSON_PATCH)
        call("DELETE", f"{ns_recs}/one")  # finalizer: marked, not gone
        call("GET", f"{ns_recs}/one")
        call("PATCH", f"{ns_recs}/one", json={"metadata": {"finalizers": []}}, headers=MERGE)  # now gone
        call("GET", f"{ns_recs}/one")
        call("DELETE", f"{ns_recs}/one")
        call("DELETE", f"{other_recs}/two")
        call("POST", ns_recs, json=_reconcile("one"))  # the same name again, after deletion
        call("GET", "/apis")
        call("GET", RECS)
        call("GET", "/api/v1/namespaces")
    finally:
        answers.append(("watch", _normal(watch.result())))
    return answers


@pytest.fixture
def emulators() -> Iterator[tuple[KubeApi, KubeApi]]:
    direct, matched = KubeApi(), KubeApi(KmockMatched)
    for kube in (direct.start(), matched.start()):
        kube.add_namespace(NS)
        kube.add_namespace(OTHER)
    try:
        yield direct, matched
    finally:
        matched.stop()  # last started, first stopped: kmock chains a hostname resolver per server
        direct.stop()


def test_the_emulator_answers_as_kmock_does(emulators: tuple[KubeApi, KubeApi]) -> None:
    direct, matched = emulators
    answers = _script(direct)
    assert answers == _script(matched)
    # And what they agree on is what an API server answers:
    created, conflict, missing = answers[0][3], answers[1][2], answers[7][2]
    assert created["metadata"]["generation"] == 1 and "status" not in created
    assert (conflict, missing) == (409, 404)
    spec_patched, label_patched, status_ignored, status_patched = (a[3] for a in answers[11:15])
    assert spec_patched["metadata"]["generation"] == 2 and label_patched["metadata"]["generation"] == 2
    assert "status" not in status_ignored and status_patched["status"] == {"phase": "Ready"}
    assert status_patched["spec"]["interval"] == "1m"
    assert [a[2] for a in answers[15:18]] == [404, 422, 409]
    watched = [(event["type"], event["object"]["metadata"]["name"]) for event in answers[-1][1]]
    assert watched == [("ADDED", "one")] + [("MODIFIED", "one")] * 7 + [("DELETED", "one"), ("ADDED", "one")]


def test_a_reaction_added_by_a_test_still_wins(emulators: tuple[KubeApi, KubeApi]) -> None:
    _, matched = emulators
    answer = matched._client().get("/test-reaction")
    assert answer.status_code == 200 and answer.json() == {"served": "by the test's reaction"}
    assert matched._client().get(f"{RECS}/namespaces/{NS}/reconciles").json()["items"] == []


def test_a_burst_of_changes_reaches_every_watch_whole_and_in_order() -> None:
    """Events queued while a watch is being written go out together (as the API server flushes only
    when no further event waits): each still arrives once, on a line of its own, in write order."""
    kube = KubeApi().start()
    kube.add_namespace(NS)
    path = f"{RECS}/namespaces/{NS}/reconciles"
    count = 40
    try:
        watches = [Watch(kube.url, path, count=count), Watch(kube.url, path, count=count)]

        async def create_all() -> None:
            async with httpx.AsyncClient(base_url=kube.url) as client:
                answers = await asyncio.gather(
                    *(client.post(path, json=_reconcile(f"r{i}")) for i in range(count))
                )
            assert all(answer.is_success for answer in answers)

        asyncio.run(create_all())
        seen = [watch.result() for watch in watches]
    finally:
        kube.stop()
    assert seen[0] == seen[1]
    assert sorted(event["object"]["metadata"]["name"] for event in seen[0]) == sorted(
        f"r{i}" for i in range(count)
    )
    assert {event["type"] for event in seen[0]} == {"ADDED"}
    versions = [int(event["object"]["metadata"]["resourceVersion"]) for event in seen[0]]
    assert versions == sorted(versions)


def test_the_emulator_parses_requests_as_kmock_does() -> None:
    kube = KubeApi(BothParses).start()
    kube.add_namespace(NS)
    kube.add_namespace(OTHER)
    try:
        _script(kube)
    finally:
        kube.stop()
    assert isinstance(kube.emulator, BothParses)
    assert len(kube.emulator.parsed) > 30 and kube.emulator.differences == []
