"""Probes and metrics: no bearer token needed on the probes (kubelet cannot send one)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from reconciler_api.deps import AuthorizerDep, CallerDep, StoreDep
from reconciler_api.metrics import render_metrics

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {}})
async def readyz(store: StoreDep) -> dict[str, str]:
    await run_in_threadpool(store.cache.ping)  # CacheUnavailable -> 503
    return {"status": "ok"}


@router.get("/metrics", response_class=Response, responses={401: {}, 403: {}})
async def metrics(store: StoreDep, caller: CallerDep, authorizer: AuthorizerDep) -> Response:
    """Needs `get` on the non-resource URL /metrics in kubernetes mode (kube-rbac-proxy's convention)."""
    if not await authorizer.may_scrape(caller):
        raise HTTPException(403, f"{caller.username} may not get /metrics")
    body = await run_in_threadpool(render_metrics, store)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
