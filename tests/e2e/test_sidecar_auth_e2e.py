"""The real sidecar process with RECONCILER_API_AUTH=kubernetes: TokenReview and SubjectAccessReview
answered by the Kubernetes API emulator from a table this module sets, which also counts them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from reconciler.cache import ValkeyCache
from reconciler.cli.app import app as cli_app
from reconciler.models.task import ReconcileRef, TaskRecord, TaskStatus, new_task_id
from reconciler.tasks import TaskStore
from tests.e2e.conftest import Sidecar, reconciler_command, start_sidecar
from tests.kube import KubeApi, write_kubeconfig
from tests.valkey_server import ValkeyProcess

pytestmark = pytest.mark.e2e

A, B = "team-sre", "team-platform"
PIPELINE_A = "system:serviceaccount:team-sre:pipeline"
TOKEN_A, TOKEN_MANY, TOKEN_PROM = "kube-token-a", "kube-token-many", "kube-token-prometheus"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def store(valkey_server: ValkeyProcess) -> TaskStore:
    return TaskStore(ValkeyCache.from_url(valkey_server.url), ttl_seconds=600, history_size=5)


@pytest.fixture(scope="module")
def secured(kube: KubeApi, base_env: dict[str, str], e2e_dir: object) -> Iterator[Sidecar]:
    access = kube.access
    access.add_user(TOKEN_A, PIPELINE_A, groups=("system:serviceaccounts",))
    access.add_user(TOKEN_MANY, "many-waiter")
    access.add_user(TOKEN_PROM, "system:serviceaccount:monitoring:prometheus")
    access.allow(PIPELINE_A, A)
    access.allow("many-waiter", A)
    access.allow_path("system:serviceaccount:monitoring:prometheus", "/metrics")
    sidecar = start_sidecar("api-kube-auth", {**base_env, "RECONCILER_API_AUTH": "kubernetes"}, e2e_dir)  # type: ignore[arg-type]
    yield sidecar
    sidecar.process.stop()


def task(store: TaskStore, namespace: str, name: str, status: TaskStatus) -> TaskRecord:
    record = TaskRecord(
        reconcile=ReconcileRef(namespace=namespace, name=name), integration="x", status=status
    )
    store.save(record)
    return record


def finish(store: TaskStore, record: TaskRecord) -> None:
    record.status = TaskStatus.SUCCESS
    store.save(record)


def test_a_reads_and_long_polls_its_own_task(secured: Sidecar, store: TaskStore) -> None:
    record = task(store, A, "grp-a", TaskStatus.RUNNING)
    threading.Timer(0.5, finish, (store, record)).start()
    with secured.client() as client:
        started = time.monotonic()
        answer = client.get(
            f"/reconcile/{record.task_id}", params={"timeout_seconds": 20}, headers=bearer(TOKEN_A)
        )
        assert answer.status_code == 200 and answer.json()["status"] == "success"
        assert 0.4 < time.monotonic() - started < 10
        latest = client.get(f"/reconciles/{A}/grp-a", headers=bearer(TOKEN_A))
        assert latest.status_code == 200 and latest.json()["recent"][0] == record.task_id


def test_another_namespace_looks_exactly_like_an_unknown_task(secured: Sidecar, store: TaskStore) -> None:
    other = task(store, B, "grp-b", TaskStatus.SUCCESS)
    unknown = new_task_id()
    with secured.client() as client:
        hidden = client.get(f"/reconcile/{other.task_id}", headers=bearer(TOKEN_A))
        missing = client.get(f"/reconcile/{unknown}", headers=bearer(TOKEN_A))
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["detail"].replace(other.task_id, "ID") == missing.json()["detail"].replace(
            unknown, "ID"
        )
        assert "grp-b" not in hidden.text
        waited = client.get(
            f"/reconcile/{other.task_id}", params={"timeout_seconds": 5}, headers=bearer(TOKEN_A)
        )
        assert waited.status_code == 404
        listing = client.get(f"/reconciles/{B}/grp-b", headers=bearer(TOKEN_A))
        nothing = client.get(f"/reconciles/{B}/never-ran", headers=bearer(TOKEN_A))
        assert listing.status_code == nothing.status_code == 404
        assert listing.json()["detail"].replace("grp-b", "N") == nothing.json()["detail"].replace(
            "never-ran", "N"
        )


def test_no_or_unknown_token_is_401(secured: Sidecar, store: TaskStore) -> None:
    record = task(store, A, "grp-401", TaskStatus.SUCCESS)
    with secured.client() as client:
        for headers in ({}, bearer("not-a-kube-token")):
            answer = client.get(f"/reconcile/{record.task_id}", headers=headers)
            assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
            assert client.get(f"/reconciles/{A}/grp-401", headers=headers).status_code == 401
            assert client.get("/metrics", headers=headers).status_code == 401
        assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200


def test_metrics_need_get_on_the_metrics_url(secured: Sidecar) -> None:
    with secured.client() as client:
        assert client.get("/metrics", headers=bearer(TOKEN_A)).status_code == 403
        scraped = client.get("/metrics", headers=bearer(TOKEN_PROM))
        assert scraped.status_code == 200 and "reconciler_tasks" in scraped.text


def test_a_thousand_waiting_clients_make_a_few_reviews(
    kube: KubeApi, secured: Sidecar, store: TaskStore
) -> None:
    record = task(store, A, "grp-many", TaskStatus.RUNNING)
    access = kube.access
    tokens_before, access_before = access.token_reviews, access.access_reviews

    async def wait_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=1100, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=secured.url, timeout=60, limits=limits) as client:
            url = f"/reconcile/{record.task_id}"
            waiters = [
                asyncio.ensure_future(
                    client.get(url, params={"timeout_seconds": 60}, headers=bearer(TOKEN_MANY))
                )
                for _ in range(1000)
            ]
            await asyncio.sleep(2)  # every request is in, authorized, and waiting
            assert not any(w.done() for w in waiters)
            await asyncio.get_running_loop().run_in_executor(None, finish, store, record)
            return await asyncio.gather(*waiters)

    answers = asyncio.run(wait_all())
    assert [a.status_code for a in answers] == [200] * 1000
    assert {a.json()["status"] for a in answers} == {"success"}
    assert access.token_reviews - tokens_before <= 2
    assert access.access_reviews - access_before <= 2


def test_an_empty_static_token_refuses_to_start(base_env: dict[str, str]) -> None:
    done = subprocess.run(
        [*reconciler_command(), "api", "--port", "1"],
        env={**base_env, "RECONCILER_API_TOKEN": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "RECONCILER_API_TOKEN is set but empty" in done.stderr and "Traceback" not in done.stderr


def test_reconciler_status_sends_the_kube_context_token(
    kube: KubeApi, secured: Sidecar, store: TaskStore, tmp_path: Path
) -> None:
    kube.access.add_user("kube-pipeline-token", PIPELINE_A)  # the token write_kubeconfig puts there
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, name="pipeline")
    mine, theirs = (
        task(store, A, "grp-cli", TaskStatus.SUCCESS),
        task(store, B, "grp-cli", TaskStatus.SUCCESS),
    )
    env = {"KUBECONFIG": str(kubeconfig), "RECONCILER_API_TOKEN": ""}
    runner = CliRunner()
    shown = runner.invoke(cli_app, ["status", mine.task_id, "--api", secured.url, "-o", "json"], env=env)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["task_id"] == mine.task_id
    hidden = runner.invoke(cli_app, ["status", theirs.task_id, "--api", secured.url], env=env)
    assert hidden.exit_code == 1 and "404" in hidden.output
