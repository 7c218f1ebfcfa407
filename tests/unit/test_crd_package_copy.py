"""The CRD shipped inside the package (for `reconciler plan`/`apply`) is the one in deploy/crds/."""

from __future__ import annotations

from pathlib import Path

from reconciler import crd

ROOT = Path(__file__).resolve().parents[2]
DEPLOYED = ROOT / "deploy" / "crds" / crd.CRD_FILE


def test_package_copy_is_byte_identical_to_deploy_crds() -> None:
    packaged = crd.PACKAGE_CRD.read_bytes()
    assert packaged == DEPLOYED.read_bytes(), (
        f"reconciler/crds/{crd.CRD_FILE} differs from deploy/crds/; write both: make crd"
    )


def test_runtime_loads_the_package_copy() -> None:
    assert crd.load_crd() == crd.load_crd(DEPLOYED)
    assert crd.load_crd()["metadata"]["name"] == "reconciles.reconciler.dev"
