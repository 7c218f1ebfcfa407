"""Install the echo integration for a subprocess the way a package would: a distribution whose
metadata declares it in the `reconciler.integrations` entry-point group."""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.integrations.registry import ENTRY_POINT_GROUP

REPO_ROOT = Path(__file__).resolve().parents[2]


def install(site: Path) -> dict[str, str]:
    """Write the echo distribution's metadata into `site`; returns the environment a subprocess
    needs to find it (`site` and the repository, whose `tests` package holds the code)."""
    dist_info = site / "reconciler_echo-0.0.0.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: reconciler-echo\nVersion: 0.0.0\n")
    (dist_info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\necho = tests.echo:Echo\n")
    path = [str(site), str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(path)}
