"""The registry reads integrations from the `reconciler.integrations` entry-point group, built-ins and
others alike; what the shared code needs of an integration comes from its Integration class."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pytest
import yaml

from reconciler.cli.common import client_loggers
from reconciler.integrations.registry import ENTRY_POINT_GROUP, INTEGRATIONS, discover, load
from reconciler.logs import redact
from reconciler.models.spec import ReconcileSpec
from reconciler.runner import target_url
from tests.echo import Echo, plugin
from tests.echo.models import AddItem, EchoState, RemoveItem
from tests.echo.planner import plan, plan_teardown
from tests.echo.server import EchoServer


def entry(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def test_the_built_ins_are_the_installed_distributions_entry_points() -> None:
    declared = [
        e.name for e in entry_points(group=ENTRY_POINT_GROUP) if e.dist and e.dist.name == "reconciler"
    ]
    assert sorted(declared) == list(INTEGRATIONS) == list(discover())
    assert all(name == integration.name for name, integration in INTEGRATIONS.items())


def test_an_entry_point_of_another_package_loads_like_a_built_in() -> None:
    (echo,) = load([entry("echo", "tests.echo:Echo")]).values()
    assert isinstance(echo, Echo)


@pytest.mark.parametrize(
    ("entries", "error", "message"),
    [
        ([entry("echo", "tests.echo.models:EchoSpec")], TypeError, "not an Integration subclass"),
        ([entry("ekko", "tests.echo:Echo")], ValueError, "whose name is 'echo'"),
        ([entry("echo", "tests.echo:Echo")] * 2, ValueError, "already registers 'echo'"),
    ],
)
def test_a_bad_entry_point_is_named(entries: list[EntryPoint], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        load(entries)


@pytest.mark.parametrize("integration", [*INTEGRATIONS.values(), Echo()], ids=lambda i: i.name)
def test_each_integrations_example_and_url_field(integration: Echo) -> None:
    manifest = integration.manifest("example", "default", integration.example, "bot")
    spec = ReconcileSpec.model_validate(manifest["spec"]) if integration.name in INTEGRATIONS else None
    block = integration.spec_model.model_validate(integration.example)
    assert getattr(block, integration.url_field)
    if spec is not None:
        url, field = target_url(spec)
        assert field.startswith(f"spec.{integration.spec_field}.") and url


def test_token_patterns_come_from_the_registry() -> None:
    assert redact("a xoxb-1-abc and glpat-Abc_1 and Bearer abc") == "a *** and *** and ***"
    for integration in INTEGRATIONS.values():
        assert integration.token_patterns, f"{integration.name} names no token format"


def test_echo_planner_adds_and_removes() -> None:
    state = EchoState(items=frozenset({"a", "b"}))
    assert plan(["b", "c"], state) == [AddItem(target="c"), RemoveItem(target="a")]
    assert plan(["a", "b"], state) == []
    assert plan_teardown(["b", "c"], state) == [RemoveItem(target="b")]


def test_the_command_line_runs_a_plug_in_found_through_its_entry_point(tmp_path: Path) -> None:
    """`reconciler plan` in a process where the echo distribution is installed: spec validation, the
    plan and the token's redaction all know echo, and nothing outside tests/echo/ names it."""
    token = "echo-token-cli"
    with EchoServer(token) as server:
        server.items.add("stale")
        manifest = Echo().manifest(
            "echo-demo", "default", {"url": server.url, "items": ["hello"]}, "echo-bot"
        )
        path = tmp_path / "echo.yaml"
        path.write_text(yaml.safe_dump(manifest))
        env = {**os.environ, **plugin.install(tmp_path / "site"), "ECHO_TOKEN": token}
        env["RECONCILER_ALLOWED_HOSTS"] = "127.0.0.1"
        exe = Path(sys.executable).parent / "reconciler"
        done = subprocess.run(
            [str(exe), "plan", "-f", str(path), "--token-env", "ECHO_TOKEN"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    output = done.stdout + done.stderr
    assert "add_item" in output and "hello" in output and "remove_item" in output and "stale" in output, (
        output
    )
    assert token not in output
    assert server.write_calls() == []


def test_verbose_shows_every_integrations_client_loggers() -> None:
    loggers = client_loggers()
    assert "reconciler" in loggers
    assert all(name in loggers for integration in INTEGRATIONS.values() for name in integration.loggers)


@pytest.mark.parametrize("integration", [*INTEGRATIONS.values(), Echo()], ids=lambda i: i.name)
def test_each_integration_has_the_three_layers(integration: Echo) -> None:
    """The layers contract in pyproject.toml checks the imports between these modules; this checks
    they exist (import-linter's wildcard containers cannot require them)."""
    package = type(integration).__module__
    for layer in ("models", "planner", "client", "service"):
        assert importlib.util.find_spec(f"{package}.{layer}") is not None, f"{package} has no {layer} module"
