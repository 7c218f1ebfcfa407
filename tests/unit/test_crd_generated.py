"""The committed CRD copies are what `make crd` writes from the models: a model change without
`make crd` fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import crdgen


@pytest.mark.parametrize("path", crdgen.COPIES, ids=lambda path: str(path.relative_to(crdgen.ROOT)))
def test_committed_crd_is_the_generated_one(path: Path) -> None:
    assert path.read_text(encoding="utf-8") == crdgen.render(), f"{path} is stale: run `make crd`"
