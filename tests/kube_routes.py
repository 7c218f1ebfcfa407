"""kmock's KubernetesEmulator routes, served at a constant cost per request.

kmock answers every request by sorting all its reactions and running each one's filter DSL over the
request until one matches, and it finds an object by scanning every stored object. Both are fine for
a dozen requests; benchmarks send thousands (issue #9 P5: ~3,000 for 500 Reconciles), and there the
emulator burnt a core that the operator under test should have had. `DirectRoutes` serves the
emulator's own routes (list, watch, fetch, create, update, delete of a resource) by action, and the
`IndexedEmulator` finds objects by their (resource, namespace, name) key. The answers are kmock's:
same bookkeeping, same bodies, same errors (tests/servers/test_kube_emulator.py compares both ways).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import AsyncGenerator, Awaitable
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import parsing, rendering

ROUTES = {
    kmock.action.LIST: "_serve_list",
    kmock.action.WATCH: "_serve_watch",
    kmock.action.FETCH: "_serve_fetch",
    kmock.action.CREATE: "_serve_create",
    kmock.action.UPDATE: "_serve_update",
    kmock.action.DELETE: "_serve_delete",
}
"""KubernetesEmulator's fallback reaction for each action: what kmock's matching picks for a request
to a resource when no test added reactions of its own."""


class DirectRoutes(kmock.RawHandler):
    """Finds the emulator's own route by the request's action instead of by kmock's reaction matching.

    It sits below KubernetesEmulator in the method order, so KubernetesEmulator._handle keeps doing
    the object bookkeeping and its `super()._handle()` lands here. A test that adds reactions of its
    own (`emulator[...] << ...`) gets kmock's matching back, so its reactions win as they would.
    """

    __slots__ = ()

    def _own_route(self, request: kmock.Request) -> str | None:
        """The name of the method that serves this request, or None to let kmock match it."""
        raise NotImplementedError

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        route = self._own_route(request)
        if route is None:
            return await super()._handle(request)
        answer: Awaitable[Any] | AsyncGenerator[Any, None] = getattr(self, route)(request)
        if isinstance(answer, AsyncGenerator):  # a watch
            return await _stream(request, answer)
        return aiohttp.web.json_response(await answer, dumps=compact_json)


def compact_json(value: Any) -> str:
    """JSON without blanks after separators, as the API server (Go's encoding/json) writes it."""
    return json.dumps(value, separators=(",", ":"))


async def _stream(request: kmock.Request, events: AsyncGenerator[Any, None]) -> aiohttp.web.StreamResponse:
    """A watch, written as kmock writes a stream: headers once the first chunk is there, then one
    JSON line per event until the client goes away."""
    assert request._raw_request is not None  # only None for requests made up in kmock's own tests
    response = aiohttp.web.StreamResponse()
    try:
        first = await anext(events)
        try:
            await response.prepare(request._raw_request)
            await response.write(first if isinstance(first, bytes) else _line(first))
            await _write_as_they_come(response, events)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away, as kmock also ignores
        except Exception as exc:  # kmock's handler writes an ERROR event into the open stream
            raise rendering.StreamingError(response) from exc
        return response
    finally:
        await events.aclose()  # leave the event bus now, not when garbage-collected


async def _write_as_they_come(
    response: aiohttp.web.StreamResponse, events: AsyncGenerator[Any, None]
) -> None:
    """Each event as soon as it is there, but the events already waiting go out in one write.

    The API server does the same (its watch handler flushes only when no further event is queued),
    and one socket write per event cost the emulator a tenth of its CPU in the P5 benchmark.
    """
    lines: list[bytes] = []
    waiting = asyncio.Event()

    async def pump() -> None:
        async for event in events:
            lines.append(_line(event))
            waiting.set()

    pumping = asyncio.ensure_future(pump())
    pumping.add_done_callback(lambda _: waiting.set())
    try:
        while True:
            await waiting.wait()
            waiting.clear()
            if lines:
                chunk = b"".join(lines)
                lines.clear()
                await response.write(chunk)
            if pumping.done():
                return pumping.result()  # raises what ended the stream
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping


_encoded: collections.OrderedDict[int, tuple[Any, bytes]] = collections.OrderedDict()
"""The last events' JSON lines by the events' identity (every watch of a resource gets the same
event dict from kmock's bus): one encoding per event, not one per watch."""


def _line(event: Any) -> bytes:
    known = _encoded.get(id(event))
    if known is not None and known[0] is event:
        return known[1]
    line = compact_json(event).encode("utf-8") + b"\n"
    _encoded[id(event)] = (event, line)  # holding the event keeps its id from being reused
    if len(_encoded) > 256:
        _encoded.popitem(last=False)
    return line


_METHODS = {member.value: member for member in kmock.method}
_RESOURCES: dict[tuple[str, str | None, str | None], kmock.resource] = {}


async def _parse(raw_request: aiohttp.web.BaseRequest, *, id: int) -> kmock.Request:
    """kmock's Request._parse with the same fields from the same sources, at a lower cost: the HTTP
    method found in a dict (kmock compares it with each member of its enum, twice), one `resource`
    per API path kept (kmock builds one per request, checking Protocols), the body decoded once."""
    body = await raw_request.read()
    text = await raw_request.text()
    try:
        data = json.loads(text)  # what raw_request.json() does, after decoding the body again
    except ValueError:
        try:
            data = await raw_request.post() or None  # as kmock: an empty form is no data
        except ValueError:
            data = None
    k8s = parsing.parse_path(raw_request.path)
    resource = None
    if k8s.group is not None:
        key = (k8s.group, k8s.version, k8s.plural)
        if (resource := _RESOURCES.get(key)) is None:
            resource = kmock.resource(group=k8s.group, version=k8s.version, plural=k8s.plural)
            _RESOURCES[key] = resource
    method = _METHODS.get(raw_request.method) or kmock.method(raw_request.method)
    params = dict(raw_request.query)
    return kmock.Request(
        id=id,
        raw_request=raw_request,
        url=raw_request.url,
        method=method,
        params=params,
        headers=dict(raw_request.headers),
        cookies=dict(raw_request.cookies),
        data=data,
        body=body,
        text=text,
        action=parsing.guess_k8s(k8s, method, dict(params)),
        resource=resource,
        namespace=k8s.namespace,
        name=k8s.name,
        subresource=k8s.subresource,
    )


@attrs.define(kw_only=True)
class IndexedEmulator(kmock.KubernetesEmulator, DirectRoutes):
    """KubernetesEmulator that looks objects up by key and routes its own requests directly."""

    _own_reactions: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._own_reactions = len(self._payloads)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """kmock's RawHandler.__call__ with the cheaper `_parse`; kmock's own when a test added reactions."""
        if len(self._payloads) != self._own_reactions:
            return await super().__call__(raw_request)
        raw_response: aiohttp.web.StreamResponse | None = None
        try:
            if self.limit is not None and len(self._requests) >= self.limit:
                raise kmock.KMockError("Too many requests have been served so far.")
            request = await _parse(raw_request, id=len(self._requests))
            self._requests.append(request)
            try:
                return await self._handle(request)
            except rendering.StreamingError as exc:  # a stream that failed after its headers went out
                raw_response = exc.args[0]
                raise exc.__cause__ or exc  # noqa: B904 - kmock re-raises the cause the same way
        except Exception as exc:  # as kmock: raised outside `async with emulator`, else answered
            if not self._errors:
                raise
            self._errors[-1].append(exc)
            if raw_response is None or not raw_response.prepared:
                return await self._render_error(exc)
            await self._stream_error(exc, raw_response)
            await raw_response.write_eof()
            return raw_response

    def _own_route(self, request: kmock.Request) -> str | None:
        resource = request.resource
        if len(self._payloads) != self._own_reactions or resource is None or resource.plural is None:
            return None  # a test's own reactions, discovery, URLs outside the API: kmock's matching
        return ROUTES.get(request.action) if request.action is not None else None

    def _stored(self, request: kmock.Request, namespace: str | None, name: str | None) -> kmock.Object | None:
        if request.resource is None or name is None:  # never routed here (see _own_route, guess_k8s)
            return None
        key = (request.resource, namespace, name)
        return self.objects[key] if key in self.objects else None  # noqa: SIM401 - it has no get()

    # kmock's versions of these four scan all objects for the one whose key matches the request's.

    async def _serve_fetch(self, request: kmock.Request) -> kmock.Payload:
        async with self._lock:
            obj = self._stored(request, request.namespace, request.name)
        if obj is None or obj.deleted:
            raise kmock.KubernetesObjectNotFoundError()
        return obj.raw

    async def _serve_create(self, request: kmock.Request) -> kmock.Payload:
        meta = request.data.get("metadata", {})
        name = request.name or meta.get("name")
        if name is None:  # kmock then answers with whichever object matches: keep its answer
            return await super()._serve_create(request)
        async with self._lock:
            obj = self._stored(request, request.namespace or meta.get("namespace"), name)
        assert obj is not None  # stored by KubernetesEmulator._handle before it routed here
        return obj.raw

    async def _serve_update(self, request: kmock.Request) -> kmock.Payload:
        async with self._lock:
            obj = self._stored(request, request.namespace, request.name)
        assert obj is not None  # KubernetesEmulator._handle answered 404 before routing here
        return obj.last.raw  # the last state, also when this patch released the finalizers

    async def _serve_delete(self, request: kmock.Request) -> kmock.Payload:
        async with self._lock:
            obj = self._stored(request, request.namespace, request.name)
        assert obj is not None  # KubernetesEmulator._handle answered 404 before routing here
        return obj.last.raw
