"""A Kubernetes API on loopback for tests: kmock's KubernetesEmulator plus what a real API server does.

kmock stores objects as plain JSON and merges patches into them. The operator relies on more, so
this subclass adds it: `uid`, `creationTimestamp`, `resourceVersion` on every write,
`metadata.generation` bumped on spec changes only, and status-subresource semantics (writes to
`/status` touch only status; writes to the object ignore status). The server runs in a thread with
its own event loop, so sync tests and subprocesses (the real `reconciler run`) can talk to it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import httpx
import jsonpatch
import jsonpointer
import kmock
from kmock._internal import dicts as kmock_dicts

from tests.kube_routes import IndexedEmulator, compact_json

CRD_GROUP, CRD_VERSION, CRD_PLURAL = "reconciler.dev", "v1alpha1", "reconciles"
SSAR_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"

CORE_RESOURCES: dict[str, kmock.ResourceInfo] = {
    "v1/namespaces": kmock.ResourceInfo(
        kind="Namespace", singular="namespace", namespaced=False, verbs={"get", "list", "watch"}
    ),
    "v1/secrets": kmock.ResourceInfo(
        kind="Secret",
        singular="secret",
        namespaced=True,
        verbs={"get", "list", "watch", "create", "patch", "delete"},
    ),
    "v1/events": kmock.ResourceInfo(
        kind="Event", singular="event", namespaced=True, verbs={"get", "list", "watch", "create", "patch"}
    ),
    "apiextensions.k8s.io/v1/customresourcedefinitions": kmock.ResourceInfo(
        kind="CustomResourceDefinition",
        singular="customresourcedefinition",
        namespaced=False,
        verbs={"get", "list", "watch", "create"},
    ),
    f"{CRD_GROUP}/{CRD_VERSION}/{CRD_PLURAL}": kmock.ResourceInfo(
        kind="Reconcile",
        singular="reconcile",
        namespaced=True,
        shortnames={"rec"},
        categories={"all"},
        verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
        subresources={"status"},
    ),
}


TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


@attrs.define
class AccessTable:
    """What TokenReview and SubjectAccessReview answer, as the test sets it, and how often they were asked.

    `grants` holds (subject, verb, group, resource, namespace) for resources and (subject, verb, path)
    for non-resource URLs; a subject is a username or `group:NAME`, namespace `*` means every one.
    """

    users: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    grants: set[tuple[str, ...]] = attrs.field(factory=set)
    token_reviews: int = 0
    access_reviews: int = 0

    def add_user(self, token: str, username: str, groups: tuple[str, ...] = ()) -> None:
        self.users[token] = {"username": username, "uid": f"uid-{username}", "groups": list(groups)}

    def allow(self, subject: str, namespace: str, verb: str = "get", resource: str = "reconciles") -> None:
        self.grants.add((subject, verb, "reconciler.dev", resource, namespace))

    def allow_path(self, subject: str, path: str, verb: str = "get") -> None:
        self.grants.add((subject, verb, path))

    def review_token(self, spec: dict[str, Any]) -> dict[str, Any]:
        self.token_reviews += 1
        user = self.users.get(str(spec.get("token", "")))
        return {"authenticated": True, "user": user} if user else {"authenticated": False}

    def review_access(self, spec: dict[str, Any]) -> dict[str, Any]:
        self.access_reviews += 1
        subjects = [str(spec.get("user", ""))] + [f"group:{g}" for g in spec.get("groups") or []]
        wanted: list[tuple[str, ...]] = []
        if resource := spec.get("resourceAttributes"):
            for namespace in (resource.get("namespace", ""), "*"):
                key = (resource.get("verb"), resource.get("group", ""), resource.get("resource"), namespace)
                wanted += [(subject, *key) for subject in subjects]
        elif path := spec.get("nonResourceAttributes"):
            wanted = [(subject, path.get("verb"), path.get("path")) for subject in subjects]
        allowed = any(w in self.grants for w in wanted)
        return {"allowed": allowed, **({} if allowed else {"reason": "no grant in the test's table"})}


@attrs.define(kw_only=True)
class ApiServerEmulator(IndexedEmulator):
    """KubernetesEmulator with the object bookkeeping of a real kube-apiserver."""

    _versions: Iterator[int] = attrs.field(factory=lambda: itertools.count(1000), init=False)
    access: AccessTable = attrs.field(factory=AccessTable)
    denied: set[tuple[str, str, str]] = attrs.field(factory=set, init=False)
    """The access table of SelfSubjectAccessReviews: (verb, group, resource or resource/subresource)
    entries are denied, everything else is allowed (the tests' user is an admin unless told)."""

    def _next_version(self) -> str:
        return str(next(self._versions))

    def _subresources(self, resource: kmock.resource) -> set[str]:
        # Not `resource in self.resources`: its isinstance check against a Protocol costs more than
        # comparing the five resources; and `self.resources[resource]` declares unknown resources.
        for declared in self.resources:
            if declared == resource:
                return set(self.resources[declared].subresources)
        return set()

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock 0.8 cannot parse /api/v1/namespaces (cluster-scoped core list): serve it here.
        if raw_request.method == "GET" and raw_request.path.rstrip("/") == "/api/v1/namespaces":
            return await self._serve_namespaces(raw_request)
        if raw_request.method == "POST" and raw_request.path.rstrip("/") in (TOKEN_REVIEWS, ACCESS_REVIEWS):
            return await self._review(raw_request)
        if raw_request.method == "POST" and raw_request.path == SSAR_PATH:
            return await self._review_access(raw_request)
        return await super().__call__(raw_request)

    async def _review(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """TokenReview / SubjectAccessReview: the request echoed with a `status` from the table."""
        try:
            body = json.loads(await raw_request.read())
            spec = body["spec"]
        except (ValueError, KeyError, TypeError):
            return _status(400, "BadRequest", "not a review object")
        token = raw_request.path.rstrip("/") == TOKEN_REVIEWS
        status = self.access.review_token(spec) if token else self.access.review_access(spec)
        return aiohttp.web.json_response({**body, "status": status}, status=201)

    async def _serve_namespaces(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        namespaces = kmock.resource("v1/namespaces")
        items = [
            obj.raw
            for (res, _, _), obj in list(self.objects.items())
            if res == namespaces and not obj.deleted
        ]
        if raw_request.query.get("watch") not in ("true", "1"):
            return aiohttp.web.json_response(
                {
                    "apiVersion": "v1",
                    "kind": "NamespaceList",
                    "metadata": {"resourceVersion": "1"},
                    "items": items,
                }
            )
        response = aiohttp.web.StreamResponse()
        await response.prepare(raw_request)  # type: ignore[arg-type]
        for item in items:
            await response.write(json.dumps({"type": "ADDED", "object": item}).encode() + b"\n")
        await asyncio.sleep(float(raw_request.query.get("timeoutSeconds", "300")))
        return response

    async def _review_access(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """SelfSubjectAccessReview, answered from `denied`, as the authorization API does."""
        review = await raw_request.json()
        attributes = (review.get("spec") or {}).get("resourceAttributes") or {}
        resource = attributes.get("resource", "")
        if attributes.get("subresource"):
            resource += "/" + attributes["subresource"]
        key = (attributes.get("verb", ""), attributes.get("group", ""), resource)
        allowed = key not in self.denied
        review["status"] = {"allowed": allowed} if allowed else {"allowed": False, "reason": "in `denied`"}
        return aiohttp.web.json_response(review, status=201)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        try:
            return await self._handle_recorded(request)
        finally:
            self._forget(request)

    def _forget(self, request: kmock.Request) -> None:
        """Drop a served request from kmock's log. kmock finds a request's reaction by scanning the
        whole log once per reaction, so a session-long log made every request slower than the last
        (quadratic: ~0.2 s per GET after a few thousand). Only requests in flight need to be there;
        no test asserts on the log (they read the objects, as a client would)."""
        self._requests[:] = [r for r in self._requests if r is not request]
        for payload in self._payloads:
            payload._requests.clear()

    async def _handle_recorded(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # kmock matches reactions by the identity of the recorded request: edit its data in place.
        if request.resource is not None and isinstance(request.data, dict):
            if request.action == kmock.action.CREATE:
                self._on_create(request)
                if (too_big := _size_error(request.data)) is not None:
                    return too_big
            elif request.action == kmock.action.UPDATE and request.name is not None:
                self._on_patch(request)
                key = (request.resource, request.namespace, request.name)
                if key in self.objects and not self.objects[key].deleted:
                    merged = kmock_dicts.patch_dict(self.objects[key].raw, request.data)
                    if (too_big := _size_error(merged)) is not None:
                        return too_big
        elif (
            request.resource is not None
            and request.action == kmock.action.UPDATE
            and isinstance(request.data, list)
        ):
            return await self._json_patch(request)
        return await super()._handle(request)

    async def _json_patch(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """RFC 6902 patches (Kopf uses them with a `test` of resourceVersion for finalizers)."""
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            if key not in self.objects or self.objects[key].deleted:
                return _status(404, "NotFound", f"{request.name} not found")
            current = self.objects[key].raw
            try:
                new = jsonpatch.apply_patch(current, request.data)
            except jsonpatch.JsonPatchTestFailed:
                return _status(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes "
                    "to the latest version and try again",
                )
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
                return _status(422, "Invalid", str(exc))
            if (too_big := _size_error(new)) is not None:
                return too_big
            new.setdefault("metadata", {})["resourceVersion"] = self._next_version()
            # `new` is the patched copy jsonpatch made: stored as the next version as it is (a
            # merge patch of the difference would deep-copy and merge the whole object again).
            self.objects[key].history.append(new)
            raw = self.objects[key].raw
            meta = raw.get("metadata", {})
            if meta.get("deletionTimestamp") and not meta.get("finalizers"):
                self.objects[key].delete()
                await self._buses[request.resource].put({"type": "DELETED", "object": raw})  # type: ignore[index]
            else:
                await self._buses[request.resource].put({"type": "MODIFIED", "object": raw})  # type: ignore[index]
        return aiohttp.web.json_response(raw, dumps=compact_json)

    # These two edit the request's own parsed body, which nothing else holds.

    def _on_create(self, request: kmock.Request) -> None:
        data = request.data
        meta = data.setdefault("metadata", {})
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        if not meta.get("name") and meta.get("generateName"):  # as the API server does (Kopf's events)
            meta["name"] = self._generate_name(request, meta["generateName"])
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        meta["resourceVersion"] = self._next_version()
        meta["generation"] = 1
        if "status" in self._subresources(request.resource):  # type: ignore[arg-type]
            data.pop("status", None)

    def _generate_name(self, request: kmock.Request, prefix: str) -> str:
        """A free name: 5 random hex digits collide within 500 events about one run in nine, and the
        API server (since 1.31) retries a taken name rather than answering 409."""
        namespace = request.namespace or request.data["metadata"].get("namespace")  # as kmock keys it
        for _ in range(8):
            name = f"{prefix}{uuid.uuid4().hex[:5]}"
            key = (request.resource, namespace, name)
            if key not in self.objects or self.objects[key].deleted:
                break
        return name

    def _on_patch(self, request: kmock.Request) -> None:
        patch = request.data
        has_status = "status" in self._subresources(request.resource)  # type: ignore[arg-type]
        if has_status and request.subresource == "status":
            _replace(patch, {"status": patch["status"]} if "status" in patch else {})
        elif has_status:
            patch.pop("status", None)
        key = (request.resource, request.namespace, request.name)
        current = self.objects[key].raw if key in self.objects and not self.objects[key].deleted else None
        meta = patch.setdefault("metadata", {})
        meta.pop("generation", None)
        meta["resourceVersion"] = self._next_version()
        if current is not None and "spec" in patch and request.subresource != "status":
            new_spec = kmock_dicts.patch_dict(current.get("spec") or {}, patch["spec"] or {})
            if new_spec != current.get("spec"):
                meta["generation"] = int(current.get("metadata", {}).get("generation", 1)) + 1


MAX_ANNOTATIONS_BYTES = 256 * 1024
"""The API server's limit on all of an object's annotations (keys and values) together."""
MAX_OBJECT_BYTES = 1536 * 1024
"""etcd's default request limit (1.5 MiB): a larger object cannot be stored."""


@attrs.define(kw_only=True)
class CountingEmulator(ApiServerEmulator):
    """For benchmarks: counts requests by action and resource, and forgets each once answered.

    kmock keeps every request it served (for test assertions) and scans that log once per candidate
    reaction, so each request costs O(requests so far) and after a few thousand the emulator, not
    the operator, saturates a core. Dropping answered requests keeps the cost flat; the answers are
    the same. `counts` is keyed like "create reconciles" or "patch reconciles/status".
    """

    counts: collections.Counter[str] = attrs.field(factory=collections.Counter, init=False)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        kind = str(request.resource.plural if request.resource is not None else "other")
        action = str(getattr(request.action, "name", request.action)).lower()
        self.counts[f"{action} {kind}{'/' + request.subresource if request.subresource else ''}"] += 1
        try:
            return await super()._handle(request)
        finally:
            log = self._requests
            for index in range(len(log) - 1, -1, -1):
                if log[index] is request:
                    del log[index]
                    break
            for payload in self._payloads:
                with contextlib.suppress(AttributeError):
                    payload._requests.clear()


def _size_error(obj: dict[str, Any]) -> aiohttp.web.Response | None:
    """422/413 as the API server answers an object whose annotations or whole size are too large."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    total = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    if total > MAX_ANNOTATIONS_BYTES:
        return _status(
            422,
            "Invalid",
            f"metadata.annotations: Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes",
        )
    size = len(compact_json(obj).encode())
    if size > MAX_OBJECT_BYTES:
        return _status(413, "RequestEntityTooLarge", "etcdserver: request is too large")
    return None


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    return aiohttp.web.json_response(
        {
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "code": code,
            "reason": reason,
            "message": message,
        },
        status=code,
    )


def _replace(target: dict[str, Any], new: dict[str, Any]) -> None:
    target.clear()
    target.update(new)


def write_kubeconfig(path: Path, server: str, name: str = "test") -> Path:
    """A kubeconfig for a plain-HTTP API server with a bearer token, as Kopf and kubectl read it."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": name,
                "clusters": [{"name": name, "cluster": {"server": server}}],
                "users": [{"name": name, "user": {"token": f"kube-{name}-token"}}],
                "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            }
        )
    )
    return path


class KubeApi:
    """The emulator on a loopback port in a background thread, plus a small sync client for tests."""

    def __init__(self, emulator_cls: type[ApiServerEmulator] = ApiServerEmulator) -> None:
        self._emulator_cls = emulator_cls
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="kube-api", daemon=True)
        self.emulator: ApiServerEmulator | None = None
        self.url = ""
        self.http: httpx.Client | None = None

    def start(self) -> KubeApi:
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("the Kubernetes API emulator did not start")
        self.http = httpx.Client(base_url=self.url, timeout=10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
        if self.http is not None:
            self.http.close()

    def _serve(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self._emulator_cls() as emulator, kmock.Server(emulator, host="127.0.0.1") as server:
            for name, info in CORE_RESOURCES.items():
                emulator.resources[name] = info
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def _in_loop(self, fn: Callable[[], Any]) -> Any:
        assert self._loop is not None
        future: Future[Any] = Future()

        def call() -> None:
            try:
                future.set_result(fn())
            except Exception as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(call)
        return future.result(timeout=10)

    # --- what kubectl would do ------------------------------------------------------------------

    def add_namespace(self, name: str) -> None:
        """kmock 0.8 cannot parse POST /api/v1/namespaces, so namespaces go into its store directly."""
        assert self.emulator is not None
        emulator = self.emulator
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "uid": str(uuid.uuid4()), "resourceVersion": "1"},
        }
        self._in_loop(
            lambda: emulator.objects.__setitem__((kmock.resource("v1/namespaces"), None, name), body)
        )

    def write_kubeconfig(self, path: Path) -> Path:
        return write_kubeconfig(path, self.url)

    @property
    def access(self) -> AccessTable:
        """The TokenReview / SubjectAccessReview table (plain data: tests set it from their thread)."""
        assert self.emulator is not None
        return self.emulator.access

    def _client(self) -> httpx.Client:
        assert self.http is not None
        return self.http

    def create_secret(
        self, namespace: str, name: str, data: dict[str, str], *, credentials_label: bool = True
    ) -> None:
        """A Secret, labelled `reconciler.dev/credentials: "true"` (usable as credentials) by default."""
        import base64

        labels = {"reconciler.dev/credentials": "true"} if credentials_label else {}
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        self._check(self._client().post(f"/api/v1/namespaces/{namespace}/secrets", json=body))

    def create_reconcile(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace = body["metadata"]["namespace"]
        return self._check(self._client().post(self._rec_path(namespace), json=body))

    def patch_reconcile(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._check(
            self._client().patch(
                f"{self._rec_path(namespace)}/{name}",
                json=patch,
                headers={"Content-Type": "application/merge-patch+json"},
            )
        )

    def delete_reconcile(self, namespace: str, name: str) -> None:
        self._check(self._client().delete(f"{self._rec_path(namespace)}/{name}"))

    def reconcile_exists(self, namespace: str, name: str) -> bool:
        response = self._client().get(f"{self._rec_path(namespace)}/{name}")
        if response.status_code == 404:
            return False
        self._check(response)
        return True

    def get_reconcile(self, namespace: str, name: str) -> dict[str, Any]:
        return self._check(self._client().get(f"{self._rec_path(namespace)}/{name}"))

    def events(self, namespace: str) -> list[dict[str, Any]]:
        items = self._check(self._client().get(f"/api/v1/namespaces/{namespace}/events"))["items"]
        return list(items)

    def wait_for(
        self,
        namespace: str,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 30,
        what: str = "condition",
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        obj: dict[str, Any] = {}
        while time.monotonic() < deadline:
            obj = self.get_reconcile(namespace, name)
            if predicate(obj):
                return obj
            time.sleep(0.1)
        raise AssertionError(
            f"timed out waiting for {what} on {namespace}/{name}; last: "
            f"{json.dumps(obj.get('status'), indent=1)}"
        )

    @staticmethod
    def _rec_path(namespace: str) -> str:
        return f"/apis/{CRD_GROUP}/{CRD_VERSION}/namespaces/{namespace}/{CRD_PLURAL}"

    @staticmethod
    def _check(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise AssertionError(
                f"{response.request.method} {response.request.url}: "
                f"{response.status_code} {response.text[:500]}"
            )
        return response.json()


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}
