"""FastAPI dependencies, as `Annotated` aliases (FastAPI full-stack template style)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from reconciler.settings import Settings
from reconciler.tasks import TaskStore
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


def require_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """With RECONCILER_API_TOKEN set, every endpoint but the probes needs `Authorization: Bearer`."""
    expected = settings.api_token
    if expected is None:
        return
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
