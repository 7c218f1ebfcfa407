"""`status`: a task record, or a Reconcile's latest one, read from the status sidecar over HTTP."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from reconciler.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNFINISHED,
    configure_logging,
    fail,
    note,
    stdout_console,
)
from reconciler.cli.output import StatusFormat, print_task, task_json
from reconciler.logs import redact, register_secret
from reconciler.models.task import TaskRecord, TaskStatus
from reconciler.tasks import is_task_id

if TYPE_CHECKING:
    import httpx

REF_PATTERN = re.compile(r"^(?:rec|recs|reconcile|reconciles)(?:\.reconciler\.dev)?/(?P<name>[^/]+)$", re.I)


def _sidecar(api_url: str, timeout: float) -> httpx.Client:
    import httpx

    headers = {"Accept": "application/json"}
    token = os.environ.get("RECONCILER_API_TOKEN", "").strip() or _kube_bearer_token()
    if token:
        register_secret(token)
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=api_url.rstrip("/"), headers=headers, timeout=timeout)


def _kube_bearer_token() -> str | None:
    """The current kube context's bearer token, for a sidecar with RECONCILER_API_AUTH=kubernetes."""
    from reconciler.doctor.kube import KubeUnavailable, login

    try:
        return login().token or None
    except KubeUnavailable:
        return None


def _get(client: httpx.Client, path: str, wait: float | None = None) -> httpx.Response:
    import httpx

    try:
        return client.get(path, params={"timeout_seconds": wait} if wait else None)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the sidecar at {client.base_url}: {type(exc).__name__}: {exc}")


def _answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a 200 answer; any other answer ends the command with exit status 1."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = str(body.get("detail", "")) if isinstance(body, dict) else response.text[:200]
    status = response.status_code
    if status == 200 and isinstance(body, dict):
        return body
    if status == 401:
        fail(
            f"the sidecar refused the request (HTTP 401: {detail}); set RECONCILER_API_TOKEN to its token, "
            "or use a kube context whose bearer token the cluster accepts"
        )
    if status == 503:
        fail(f"the sidecar cannot reach its cache (HTTP 503): {detail}")
    fail(f"{detail or 'unexpected answer'} (HTTP {status} from {response.request.url.path})")


def _task(body: dict[str, Any]) -> TaskRecord:
    try:
        return TaskRecord.model_validate(body)
    except ValidationError as exc:
        fail(f"the sidecar sent a task record this version cannot read: {exc.errors()[0]['msg']}")


def _fetch_task(client: httpx.Client, task_id: str, wait: float | None) -> tuple[TaskRecord, bool]:
    """The record, waiting up to `wait` seconds for it to finish; True when it is still unfinished."""
    response = _get(client, f"/reconcile/{task_id}", wait)
    if response.status_code == 408:
        return _task(_answer(_get(client, f"/reconcile/{task_id}"))), True
    record = _task(_answer(response))
    return record, not record.status.finished


def _status_exit(record: TaskRecord, unfinished: bool, wait: float | None) -> int:
    if unfinished:
        waited = f" after waiting {wait:g}s" if wait else ""
        note(f"task {record.task_id} is still {record.status.value}{waited}")
        return EXIT_UNFINISHED
    return EXIT_OK if record.status is TaskStatus.SUCCESS else EXIT_FAILED


def status(
    target: Annotated[str, typer.Argument(help="A task id (32 hex digits), or rec/NAME (reconcile/NAME)")],
    namespace: Annotated[str, typer.Option("-n", "--namespace", help="Namespace of rec/NAME")] = "default",
    api_url: Annotated[
        str, typer.Option("--api", envvar="RECONCILER_API_URL", help="The sidecar's base URL")
    ] = "http://127.0.0.1:8080",
    wait: Annotated[
        float | None,
        typer.Option("--wait", metavar="SECONDS", help="Wait up to this long (<= 300s) for it to finish"),
    ] = None,
    output: Annotated[
        StatusFormat, typer.Option("-o", "--output", help="table or json")
    ] = StatusFormat.TABLE,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Debug logs of the HTTP calls to the sidecar (tokens redacted)"),
    ] = False,
) -> None:
    """Show a task record from the status sidecar (RECONCILER_API_TOKEN, else the kube context's token).

    Exit status: 0 the task succeeded, 1 it failed or the sidecar said no (404, 401, 503...), 3 unfinished.
    """
    configure_logging(verbose)
    if wait is not None and not 0 < wait <= 300:
        fail("--wait must be more than 0 and at most 300 seconds")
    ref = REF_PATTERN.match(target)
    if ref is None and not is_task_id(target):
        fail(f"{target!r} is neither a task id (32 hex digits) nor rec/NAME")
    with _sidecar(api_url, timeout=(wait or 0) + 30) as client:
        if ref is None:
            record, unfinished = _fetch_task(client, target, wait)
            payload = task_json(record)
            recent: list[str] | None = None
        else:
            record, unfinished, recent = _fetch_latest(client, namespace, ref.group("name"), wait)
            payload = {
                "namespace": namespace,
                "name": ref.group("name"),
                "latest": task_json(record),
                "recent": recent,
            }
    if output is StatusFormat.JSON:
        typer.echo(redact(_json_dumps(payload)))
    else:
        print_task(stdout_console(), record, recent)
    raise typer.Exit(_status_exit(record, unfinished, wait))


def _fetch_latest(
    client: httpx.Client, namespace: str, name: str, wait: float | None
) -> tuple[TaskRecord, bool, list[str]]:
    body = _answer(_get(client, f"/reconciles/{namespace}/{name}"))
    recent = [str(task_id) for task_id in body.get("recent") or []]
    if not isinstance(body.get("latest"), dict):
        latest = recent[0] if recent else "?"
        fail(f"the latest task of Reconcile {namespace}/{name} ({latest}) has expired from the cache")
    record = _task(body["latest"])
    if wait and not record.status.finished:
        record, unfinished = _fetch_task(client, record.task_id, wait)
        return record, unfinished, recent
    return record, not record.status.finished, recent


def _json_dumps(payload: Any) -> str:
    import json

    return json.dumps(payload, indent=2)
