"""The sidecar app in-process (TestClient) with a real Valkey: auth, errors, schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from reconciler.cache import ValkeyCache
from reconciler.models.task import ReconcileRef, TaskRecord, TaskStatus
from reconciler.settings import Settings
from reconciler.tasks import TaskStore, task_key
from reconciler_api.app import create_app
from tests.valkey_server import ValkeyProcess, free_port


@pytest.fixture
def cache(valkey_server: ValkeyProcess) -> ValkeyCache:
    return ValkeyCache.from_url(valkey_server.url)


@pytest.fixture
def client(cache: ValkeyCache) -> Iterator[TestClient]:
    settings = Settings(valkey_url="unused", api_token=SecretStr("sidecar-token-123"))
    with TestClient(create_app(settings, cache)) as test_client:
        yield test_client


AUTH = {"Authorization": "Bearer sidecar-token-123"}


def test_bearer_token_required_except_on_probes(client: TestClient, cache: ValkeyCache) -> None:
    record = TaskRecord(
        reconcile=ReconcileRef(namespace="ns", name="a"), integration="x", status=TaskStatus.SUCCESS
    )
    TaskStore(cache, ttl_seconds=60, history_size=3).save(record)
    assert client.get(f"/reconcile/{record.task_id}").status_code == 401
    assert (
        client.get(f"/reconcile/{record.task_id}", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    assert client.get(f"/reconcile/{record.task_id}", headers=AUTH).json()["task_id"] == record.task_id
    assert client.get("/reconciles/ns/a", headers=AUTH).json()["recent"] == [record.task_id]
    assert client.get("/metrics").status_code == 401
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200


def test_corrupt_record_is_a_clear_500(client: TestClient, cache: ValkeyCache) -> None:
    cache.set(task_key("b" * 32), "not json")
    response = client.get("/reconcile/" + "b" * 32, headers=AUTH)
    assert response.status_code == 500 and "TaskRecord" in response.json()["detail"]


def test_unreachable_cache_is_503() -> None:
    dead = ValkeyCache.from_url(f"valkey://127.0.0.1:{free_port()}/0", timeout=0.3)
    with TestClient(create_app(Settings(valkey_url="unused"), dead)) as test_client:
        assert test_client.get("/healthz").status_code == 200
        assert test_client.get("/readyz").status_code == 503
        response = test_client.get("/reconcile/" + "c" * 32)
        assert response.status_code == 503 and "unreachable" in response.json()["detail"]
        assert "reconciler_cache_up 0.0" in test_client.get("/metrics").text


def test_openapi_documents_the_contract(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {
        "/reconcile/{task_id}",
        "/reconciles/{namespace}/{name}",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(schema["paths"])
    params = {p["name"]: p for p in schema["paths"]["/reconcile/{task_id}"]["get"]["parameters"]}
    assert params["timeout_seconds"]["schema"]["anyOf"][0]["maximum"] == 300
