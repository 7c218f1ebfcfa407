"""One list of the operator's permissions: the chart renders its RBAC from files/operator-rbac.yaml,
and `reconciler doctor` reviews the same rules from the package's byte-identical copy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.doctor.checks import RBAC_FILE, operator_rules
from tests.deploy.conftest import CHART

Render = Callable[[str], list[dict[str, Any]]]


def test_package_copy_is_byte_identical_to_the_charts() -> None:
    assert RBAC_FILE.read_bytes() == (CHART / "files" / "operator-rbac.yaml").read_bytes(), (
        "reconciler/doctor/operator-rbac.yaml differs from the chart's; copy it: "
        "cp deploy/helm/reconciler/files/operator-rbac.yaml reconciler/doctor/"
    )


def rules_of(docs: list[dict[str, Any]], kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and d["metadata"].get("namespace") == namespace
        and not d["metadata"]["name"].endswith("-api-auth")  # the sidecar's reviews, not the operator's
    ]
    assert len(found) == 1
    return list(found[0]["rules"])


def test_cluster_wide_role_is_exactly_the_files_rules(render: Render) -> None:
    rules = operator_rules()
    assert rules_of(render("default"), "ClusterRole") == rules["cluster"] + rules["namespaced"]
    assert (
        rules_of(render("replicas-2"), "ClusterRole")
        == rules["cluster"] + rules["clusterPeering"] + rules["namespaced"]
    )


def test_namespaced_roles_are_exactly_the_files_rules(render: Render) -> None:
    rules = operator_rules()
    docs = render("replicas-2-namespaces")
    assert rules_of(docs, "ClusterRole") == rules["cluster"]
    for namespace in ("a", "b"):
        assert rules_of(docs, "Role", namespace) == rules["namespaced"] + rules["namespacedPeering"]
