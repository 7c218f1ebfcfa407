"""Every integration, the same way, through the real operator: created -> Ready (status and task record
agree), spec changed -> re-planned and applied, deleted with `deletionPolicy: Delete` -> torn down.

The operator here also has `echo`, an integration defined only in the tests (tests/echo/), installed as
a separate distribution in the `reconciler.integrations` entry-point group: it plugs in through the
registry alone, exactly as the built-ins do.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from reconciler.integrations.registry import INTEGRATIONS
from reconciler_testing.gitlab import OWNER, GitLabTestServer
from reconciler_testing.slack import SlackTestServer
from tests.e2e.conftest import Process, Sidecar, start_operator
from tests.e2e.helpers import unique, wait_ready, wait_task_change
from tests.echo import Echo, plugin
from tests.echo.server import EchoServer
from tests.kube import KubeApi, condition

pytestmark = pytest.mark.e2e

NS = "team-plugins"
_names = itertools.count(1)


class World(Protocol):
    """One integration's fake service, seen through a spec block that manages one target's members."""

    secret: str
    token: str

    def block(self, members: Sequence[str]) -> dict[str, Any]: ...

    def members(self) -> set[str]: ...

    def torn_down(self) -> bool: ...


class SlackWorld:
    def __init__(self, kube: KubeApi, slack: SlackTestServer) -> None:
        self.slack, self.handle = slack, unique("generic")
        self.token, self.secret = f"xoxb-plugins-{self.handle}", f"plugins-{self.handle}"
        slack.add_token(self.token)
        kube.create_secret(NS, self.secret, {"token": self.token})
        self.emails = {m: f"{m}-{self.handle}@example.com" for m in ("m1", "m2", "m3")}
        self.ids = {slack.add_user(email): m for m, email in self.emails.items()}

    def block(self, members: Sequence[str]) -> dict[str, Any]:
        group = {
            "handle": self.handle,
            "name": f"Generic {self.handle}",
            "users": [self.emails[m] for m in members],
        }
        return {"apiUrl": self.slack.api_url, "usergroups": [group]}

    def members(self) -> set[str]:
        return {self.ids[user] for user in self.slack.usergroup(self.handle)["users"]}

    def torn_down(self) -> bool:
        return bool(self.slack.usergroup(self.handle)["date_delete"])  # disabled


class GitlabWorld:
    def __init__(self, kube: KubeApi, gitlab: GitLabTestServer) -> None:
        suffix = next(_names)
        self.gitlab, self.path = gitlab, f"plugins/generic-{suffix}"
        bot, self.token = f"plugins-bot-{suffix}", f"glpat-plugins-{suffix}"
        self.users = {m: f"{m}-plugins-{suffix}" for m in ("m1", "m2", "m3")}
        for username in (bot, *self.users.values()):
            gitlab.add_user(username)
        gitlab.add_token(self.token, username=bot)
        gitlab.add_group(self.path)
        gitlab.add_member("group", self.path, bot, OWNER)
        self.secret = f"plugins-gitlab-{suffix}"
        kube.create_secret(NS, self.secret, {"token": self.token})

    def block(self, members: Sequence[str]) -> dict[str, Any]:
        listed = [{"username": self.users[m], "accessLevel": "developer"} for m in members]
        return {"url": self.gitlab.url, "groups": [{"path": self.path, "members": listed}]}

    def members(self) -> set[str]:
        by_username = {username: m for m, username in self.users.items()}
        return {by_username[u] for u in self.gitlab.members("group", self.path) if u in by_username}

    def torn_down(self) -> bool:
        return self.members() == set()


class EchoWorld:
    secret = "plugins-echo"

    def __init__(self, kube: KubeApi, echo: EchoServer) -> None:
        self.echo, self.token = echo, echo.token
        kube.create_secret(NS, self.secret, {"token": self.token})

    def block(self, members: Sequence[str]) -> dict[str, Any]:
        return {"url": self.echo.url, "items": list(members)}

    def members(self) -> set[str]:
        return set(self.echo.items)

    def torn_down(self) -> bool:
        return self.echo.items == set()


WORLDS = {"slack-usergroups": SlackWorld, "gitlab-members": GitlabWorld, Echo.name: EchoWorld}
OPERATORS_INTEGRATIONS = {**INTEGRATIONS, Echo.name: Echo()}
"""What the operator below knows: the installed integrations and echo."""


def test_every_registered_integration_has_a_world() -> None:
    """A new integration gets the generic end-to-end test by adding its World here."""
    assert set(OPERATORS_INTEGRATIONS) == set(WORLDS)


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    with EchoServer("echo-token-e2e") as server:
        yield server


@pytest.fixture(scope="module")
def plugin_operator(kube: KubeApi, base_env: dict[str, str], e2e_dir: Path) -> Iterator[Process]:
    kube.add_namespace(NS)
    env = {**base_env, **plugin.install(e2e_dir / "echo-site")}
    process = start_operator("operator-plugins", env, e2e_dir, NS)
    yield process
    process.stop()


@pytest.fixture
def world(
    request: pytest.FixtureRequest,
    kube: KubeApi,
    slack: SlackTestServer,
    gitlab: GitLabTestServer,
    echo: EchoServer,
) -> World:
    fakes: dict[str, Any] = {"slack-usergroups": slack, "gitlab-members": gitlab, Echo.name: echo}
    name: str = request.param
    world: World = WORLDS[name](kube, fakes[name])
    return world


def check_run(obj: dict[str, Any], record: dict[str, Any], integration: str, generation: int) -> None:
    """Status and the task record tell the same run: succeeded, every planned action applied."""
    status = obj["status"]
    ready = condition(obj, "Ready")
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == (
        "True",
        "Succeeded",
        generation,
    )
    planned = len(status["actions"])
    assert planned > 0 and status["summary"] == {"planned": planned, "applied": planned, "failed": 0}
    assert record["status"] == "success" and record["errors"] == [] and record["applied"] == planned
    assert record["integration"] == integration and record["dry_run"] is False
    assert record["reconcile"] == {"namespace": NS, "name": obj["metadata"]["name"], "generation": generation}
    assert record["actions"] == status["actions"]


@pytest.mark.parametrize("world", list(OPERATORS_INTEGRATIONS), indirect=True)
def test_create_change_delete(
    request: pytest.FixtureRequest, kube: KubeApi, plugin_operator: Process, sidecar: Sidecar, world: World
) -> None:
    integration = OPERATORS_INTEGRATIONS[request.node.callspec.params["world"]]
    name = unique(f"generic-{integration.name}")
    manifest = integration.manifest(
        name, NS, world.block(["m1", "m2"]), world.secret, deletionPolicy="Delete"
    )
    kube.create_reconcile(manifest)

    created = wait_ready(kube, NS, name)
    assert world.members() == {"m1", "m2"}
    with sidecar.client() as http:
        check_run(created, http.get(f"/reconcile/{created['status']['taskId']}").json(), integration.name, 1)

    kube.patch_reconcile(NS, name, {"spec": {integration.spec_field: world.block(["m2", "m3"])}})
    changed = wait_task_change(kube, NS, name, created["status"]["taskId"])
    assert world.members() == {"m2", "m3"}
    with sidecar.client() as http:
        check_run(changed, http.get(f"/reconcile/{changed['status']['taskId']}").json(), integration.name, 2)

    kube.delete_reconcile(NS, name)
    wait_gone(kube, name)
    assert world.torn_down()
    assert world.token not in plugin_operator.log()  # the operator logs at DEBUG


def wait_gone(kube: KubeApi, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while kube.reconcile_exists(NS, name):
        assert time.monotonic() < deadline, f"{NS}/{name} was not deleted (finalizer still there?)"
        time.sleep(0.1)
