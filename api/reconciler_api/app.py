"""The sidecar's FastAPI application."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from reconciler import __version__
from reconciler.cache import connect_cache
from reconciler.cache.base import CacheBackend, CacheCorrupt
from reconciler.errors import CacheUnavailable
from reconciler.settings import Settings, get_settings
from reconciler.tasks import TaskStore
from reconciler_api.auth import Authorizer, make_authorizer
from reconciler_api.docs import add_docs
from reconciler_api.metrics import observe_latency
from reconciler_api.routers import health, tasks
from reconciler_api.waiting import TaskNotifier

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, cache: CacheBackend | None = None, authorizer: Authorizer | None = None
) -> FastAPI:
    """The app; AuthConfigError when the auth settings cannot work (the sidecar must not start)."""
    settings = settings or get_settings()
    authorizer = authorizer or make_authorizer(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        backend = cache if cache is not None else await run_in_threadpool(connect_cache, settings)
        app.state.settings = settings
        app.state.store = TaskStore(
            backend, ttl_seconds=settings.task_ttl_seconds, history_size=settings.history_size
        )
        app.state.notifier = TaskNotifier(backend)
        app.state.notifier.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            await run_in_threadpool(app.state.notifier.stop)
            await authorizer.aclose()

    app = FastAPI(
        title="reconciler status API",
        version=__version__,
        description="Task records of Reconcile runs, served from the shared Valkey cache.",
        lifespan=lifespan,
        docs_url=None,  # served from local files below, never from a CDN
        redoc_url=None,
        openapi_url="/openapi.json" if settings.api_docs else None,
    )
    if settings.api_docs:
        add_docs(app, "/openapi.json")
    app.state.authorizer = authorizer
    app.middleware("http")(observe_latency)
    app.include_router(health.router)
    app.include_router(tasks.router)

    @app.exception_handler(CacheUnavailable)
    async def cache_down(_: Request, exc: CacheUnavailable) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=503)

    @app.exception_handler(CacheCorrupt)
    async def cache_corrupt(_: Request, exc: CacheCorrupt) -> JSONResponse:
        log.error("corrupt cache entry: %s", exc)
        return JSONResponse({"detail": str(exc)}, status_code=500)

    return app
