"""docs/troubleshooting.md explains every reason a run can end with: each reason the code raises
(PermanentError/TransientError and their subclasses) has a row there."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RAISED = re.compile(r'(?:PermanentError|TransientError|ReconcileError|__init__)\(\s*"([A-Z][A-Za-z]+)"')


def raised_reasons() -> set[str]:
    reasons: set[str] = set()
    for folder in ("reconciler", "operator"):
        for path in (REPO / folder).rglob("*.py"):
            reasons |= set(RAISED.findall(path.read_text()))
    return reasons


def test_every_reason_is_explained() -> None:
    reasons = raised_reasons()
    assert {"InvalidSpec", "UnknownUsers", "RateLimited", "Timeout", "HostNotAllowed"} <= reasons
    doc = (REPO / "docs" / "troubleshooting.md").read_text()
    missing = sorted(r for r in reasons if f"`{r}`" not in doc)
    assert missing == [], f"add these reasons to docs/troubleshooting.md: {missing}"
