"""deploy/argocd/health.lua, run as Argo CD runs it: `obj` is the Reconcile, the script returns hs."""

from __future__ import annotations

import copy
import importlib
import importlib.util
import re
from typing import Any

import pytest

from tests.deploy.conftest import REPO

lupa = pytest.importorskip("lupa")

SCRIPT = (REPO / "deploy" / "argocd" / "health.lua").read_text()
README = (REPO / "deploy" / "argocd" / "README.md").read_text()
# Argo CD embeds gopher-lua (Lua 5.1); also run the newest Lua that lupa bundles.
RUNTIMES = [name for name in ("lupa.lua51", "lupa.luajit21", "lupa") if importlib.util.find_spec(name)]


def to_lua(runtime: Any, value: Any) -> Any:
    """JSON-like Python into Lua tables; numbers become floats, as Argo CD's JSON decoding makes them."""
    if isinstance(value, dict):
        return runtime.table_from({k: to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([to_lua(runtime, v) for v in value])
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(value)


@pytest.fixture(params=RUNTIMES)
def health(request: pytest.FixtureRequest) -> Any:
    module = importlib.import_module(request.param)

    def run(obj: dict[str, Any]) -> tuple[str, str]:
        lua = module.LuaRuntime(unpack_returned_tuples=True)
        lua.globals().obj = to_lua(lua, obj)
        hs = lua.execute(SCRIPT)
        return hs["status"], hs["message"]

    return run


def cond(ctype: str, status: str, reason: str = "", message: str = "", generation: int = 4) -> dict[str, Any]:
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": "2026-11-23T08:00:00Z",
    }


def reconcile(
    *conditions: dict[str, Any], generation: int = 4, observed: int | None = 4, suspend: bool = False
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "reconciler.dev/v1alpha1",
        "kind": "Reconcile",
        "metadata": {"name": "sre-usergroups", "namespace": "team-sre", "generation": generation},
        "spec": {"integration": "slack-usergroups", "suspend": suspend},
        "status": {"conditions": list(conditions), "taskId": "5f0c"},
    }
    if observed is not None:
        obj["status"]["observedGeneration"] = observed
    return obj


READY = reconcile(
    cond("Ready", "True", "Succeeded", "Up to date: nothing to change (task 5f0c)"),
    cond("Reconciling", "False", "Succeeded", "Up to date: nothing to change (task 5f0c)"),
    cond("Stalled", "False", "Succeeded", "Up to date: nothing to change (task 5f0c)"),
)


def test_ready(health: Any) -> None:
    assert health(READY) == ("Healthy", "Up to date: nothing to change (task 5f0c)")


def test_stalled(health: Any) -> None:
    obj = reconcile(
        cond("Ready", "False", "UnknownUsers", "no Slack user for carol@example.com (task 1)"),
        cond("Reconciling", "False", "UnknownUsers", "no Slack user for carol@example.com (task 1)"),
        cond("Stalled", "True", "UnknownUsers", "no Slack user for carol@example.com (task 1)"),
    )
    assert health(obj) == ("Degraded", "no Slack user for carol@example.com (task 1)")


def test_reconciling_a_new_generation(health: Any) -> None:
    obj = reconcile(
        cond("Ready", "Unknown", "Progressing", "Reconciling generation 5", generation=5),
        cond("Reconciling", "True", "Progressing", "Reconciling generation 5", generation=5),
        cond("Stalled", "False", "Progressing", "Reconciling generation 5", generation=5),
        generation=5,
        observed=5,
    )
    assert health(obj) == ("Progressing", "Reconciling generation 5")


def test_retrying_after_a_transient_failure(health: Any) -> None:
    obj = reconcile(
        cond("Ready", "False", "RateLimited", "Slack answered 429 (task 2)"),
        cond("Reconciling", "True", "ProgressingWithRetry", "Slack answered 429 (task 2); retrying in 20s"),
        cond("Stalled", "False", "RateLimited", "Slack answered 429 (task 2)"),
    )
    assert health(obj) == ("Progressing", "Slack answered 429 (task 2)")


def test_failed_and_not_retrying(health: Any) -> None:
    obj = reconcile(
        cond("Ready", "False", "ServiceUnavailable", "GitLab answered 503 (task 3)"),
        cond("Reconciling", "False", "ServiceUnavailable", "GitLab answered 503 (task 3)"),
        cond("Stalled", "False", "ServiceUnavailable", "GitLab answered 503 (task 3)"),
    )
    assert health(obj) == ("Degraded", "GitLab answered 503 (task 3)")


def test_new_generation_not_yet_observed(health: Any) -> None:
    # A Ready=True of generation 4 says nothing about generation 5.
    obj = copy.deepcopy(READY)
    obj["metadata"]["generation"] = 5
    assert health(obj) == ("Progressing", "Waiting for the operator to observe generation 5")


def test_stale_ready_condition(health: Any) -> None:
    obj = copy.deepcopy(READY)
    obj["metadata"]["generation"] = 5
    obj["status"]["observedGeneration"] = 5
    assert health(obj)[0] == "Progressing"


def test_stalled_for_an_old_generation_is_progressing(health: Any) -> None:
    obj = reconcile(
        cond("Ready", "False", "InvalidSpec", "bad"),
        cond("Stalled", "True", "InvalidSpec", "bad"),
        generation=5,
        observed=4,
    )
    assert health(obj) == ("Progressing", "Waiting for the operator to observe generation 5")


def test_no_status(health: Any) -> None:
    obj = reconcile()
    del obj["status"]
    assert health(obj) == ("Progressing", "Waiting for the operator to pick up the Reconcile")


def test_status_without_conditions(health: Any) -> None:
    obj = reconcile(observed=None)
    del obj["status"]["conditions"]
    assert health(obj) == ("Progressing", "Waiting for the operator to observe generation 4")


def test_observed_but_no_ready_condition(health: Any) -> None:
    obj = reconcile(cond("Stalled", "False"))
    assert health(obj) == ("Progressing", "Waiting for the Ready condition")


def test_ready_unknown(health: Any) -> None:
    obj = reconcile(cond("Ready", "Unknown", "Progressing", "Reconciling generation 4"))
    assert health(obj) == ("Progressing", "Reconciling generation 4")


def test_ready_without_message_uses_the_reason(health: Any) -> None:
    obj = reconcile(cond("Ready", "True", "DryRun", ""))
    assert health(obj) == ("Healthy", "DryRun")


def test_suspended(health: Any) -> None:
    obj = copy.deepcopy(READY)
    obj["spec"]["suspend"] = True
    obj["status"]["conditions"][0].update(
        reason="Suspended", message="spec.suspend is true: no runs until it is false"
    )
    assert health(obj) == ("Suspended", "spec.suspend is true: no runs until it is false")


def test_readme_embeds_the_same_script() -> None:
    match = re.search(
        r"resource\.customizations\.health\.reconciler\.dev_Reconcile: \|\n((?:    .*\n|\n)+)", README
    )
    assert match, "argocd-cm snippet not found in deploy/argocd/README.md"
    embedded = "\n".join(line[4:] for line in match.group(1).rstrip("\n").splitlines()) + "\n"
    assert embedded == SCRIPT


def test_a_drifted_dry_run_is_healthy_and_says_what_is_planned(health: Any) -> None:
    """Drifted is not a health signal for Argo CD (the run worked); Ready's message carries the plan."""
    message = "Dry run: 2 action(s) planned, nothing written (task 5f0c)"
    obj = reconcile(
        cond("Ready", "True", "DryRun", message),
        cond("Reconciling", "False", "DryRun", message),
        cond("Stalled", "False", "DryRun", message),
        cond("Drifted", "True", "PlanNotApplied", "2 change(s) planned and not applied (dry run)"),
    )
    assert health(obj) == ("Healthy", message)
