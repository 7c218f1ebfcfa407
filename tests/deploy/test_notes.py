"""The chart's NOTES: the CRD upgrade step uses --server-side and needs no checkout of the
repository (no `deploy/crds/` path), and a dry run comes first."""

from __future__ import annotations

from tests.deploy.conftest import CHART, NAMESPACE, HelmRun


def test_notes_are_usable_without_the_repository(helm_run: HelmRun) -> None:
    result = helm_run.run("install", "reconciler", str(CHART), "--dry-run=client", "--namespace", NAMESPACE)
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "kubectl apply --server-side" in notes
    assert "helm show crds" in notes
    assert "deploy/crds" not in notes and "examples/" not in notes
    assert "dryRun: true" in notes
