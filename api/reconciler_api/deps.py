"""FastAPI dependencies, as `Annotated` aliases (FastAPI full-stack template style)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from reconciler.settings import Settings
from reconciler.tasks import TaskStore
from reconciler_api.auth import Authorizer, Caller
from reconciler_api.waiting import TaskNotifier

_bearer = HTTPBearer(auto_error=False)


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> TaskStore:
    store: TaskStore = request.app.state.store
    return store


def get_notifier(request: Request) -> TaskNotifier:
    notifier: TaskNotifier = request.app.state.notifier
    return notifier


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StoreDep = Annotated[TaskStore, Depends(get_store)]
NotifierDep = Annotated[TaskNotifier, Depends(get_notifier)]


def get_authorizer(request: Request) -> Authorizer:
    authorizer: Authorizer = request.app.state.authorizer
    return authorizer


AuthorizerDep = Annotated[Authorizer, Depends(get_authorizer)]


async def get_caller(
    authorizer: AuthorizerDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """Every endpoint but the probes: who is asking (401 when nobody the mode accepts)."""
    return await authorizer.authenticate(credentials.credentials if credentials is not None else None)


CallerDep = Annotated[Caller, Depends(get_caller)]
