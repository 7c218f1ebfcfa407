"""Sidecar auth settings: which mode runs, which settings refuse to start, /docs off, single flight."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from reconciler.cache import ValkeyCache
from reconciler.cli.app import app as cli_app
from reconciler.settings import Settings
from reconciler_api.app import create_app
from reconciler_api.auth import AuthConfigError, _Decisions, is_loopback, resolve_mode
from tests.valkey_server import ValkeyProcess


def test_mode_defaults_to_token_when_a_token_is_set_else_none() -> None:
    assert resolve_mode(Settings()) == "none"
    assert resolve_mode(Settings(api_token=SecretStr("t0ken"))) == "token"
    assert resolve_mode(Settings(api_auth="kubernetes")) == "kubernetes"
    for bad, said in (
        (Settings(api_token=SecretStr("")), "set but empty"),
        (Settings(api_token=SecretStr("  ")), "set but empty"),
        (Settings(api_auth="token"), "needs RECONCILER_API_TOKEN"),
    ):
        with pytest.raises(AuthConfigError, match=said):
            resolve_mode(bad)


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "::", "example.com"))


@pytest.mark.parametrize(
    ("env", "args", "said"),
    [
        ({"RECONCILER_API_AUTH": "none"}, ["--host", "0.0.0.0"], "--insecure"),
        ({"RECONCILER_API_AUTH": "token"}, [], "needs RECONCILER_API_TOKEN"),
        ({"RECONCILER_API_TOKEN": ""}, [], "set but empty"),
    ],
)
def test_api_refuses_to_start(env: dict[str, str], args: list[str], said: str) -> None:
    result = CliRunner().invoke(cli_app, ["api", "--port", "1", *args], env=env)
    assert result.exit_code == 1
    assert said in result.output and "Traceback" not in result.output


def test_docs_can_be_turned_off(valkey_server: ValkeyProcess) -> None:
    cache = ValkeyCache.from_url(valkey_server.url)
    with TestClient(create_app(Settings(valkey_url="unused", api_docs=False), cache)) as client:
        assert client.get("/docs").status_code == 404
        assert client.get("/openapi.json").status_code == 404
    with TestClient(create_app(Settings(valkey_url="unused"), cache)) as client:
        assert client.get("/openapi.json").status_code == 200


def test_decisions_are_computed_once_per_key_and_failures_are_not_kept() -> None:
    calls: list[str] = []

    async def main() -> None:
        decisions = _Decisions(ttl=30)

        async def compute() -> bool:
            calls.append("x")
            await asyncio.sleep(0.05)
            return True

        assert await asyncio.gather(*(decisions.get("k", compute) for _ in range(100))) == [True] * 100
        assert len(calls) == 1

        async def fail() -> bool:
            calls.append("f")
            raise RuntimeError("API server down")

        for _ in range(2):
            with pytest.raises(RuntimeError):
                await decisions.get("bad", fail)
        assert calls.count("f") == 2

    asyncio.run(main())
