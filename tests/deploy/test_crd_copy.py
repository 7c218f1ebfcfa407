"""The chart ships the Reconcile CRD in crds/: it must be the very file of deploy/crds/."""

from __future__ import annotations

from tests.deploy.conftest import CHART, REPO

SOURCE = REPO / "deploy" / "crds" / "reconciler.dev_reconciles.yaml"
COPY = CHART / "crds" / "reconciler.dev_reconciles.yaml"


def test_chart_crd_is_a_byte_identical_copy() -> None:
    assert COPY.read_bytes() == SOURCE.read_bytes(), (
        f"{COPY.relative_to(REPO)} differs from {SOURCE.relative_to(REPO)}: write both: make crd"
    )


def test_chart_ships_only_that_crd() -> None:
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == [SOURCE.name]
