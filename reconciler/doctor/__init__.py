"""`reconciler doctor`: check everything a run needs, one line per check, before a run finds out.

Checks, in order (a check that cannot run because an earlier one failed is skipped, saying why):
cluster reachable; installed CRD equals the packaged one; the operator's RBAC (one access review
per rule of `operator-rbac.yaml`, the chart's own list); Valkey reachable, its memory and eviction
policy; and for one Reconcile: its Secret exists, is allowed and has the key; the token works; the
token has the scopes the spec needs; its target hosts are allowed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum


class Status(StrEnum):
    OK = "ok"
    FAIL = "fail"
    WARN = "warn"
    """Worth knowing, but not a failure (e.g. a permission only needed with several replicas)."""
    SKIP = "skipped"


MARKS = {Status.OK: "✓", Status.FAIL: "✗", Status.WARN: "!", Status.SKIP: "-"}


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str

    def line(self) -> str:
        return f"{MARKS[self.status]} {self.name}: {self.message}"


def passed(checks: list[Check]) -> bool:
    """Exit 0 when nothing failed (warnings and skips do not fail)."""
    return all(check.status is not Status.FAIL for check in checks)


def render_text(checks: list[Check]) -> str:
    return "\n".join(check.line() for check in checks)


def render_json(checks: list[Check]) -> str:
    return json.dumps(
        {"ok": passed(checks), "checks": [{**asdict(c), "status": c.status.value} for c in checks]}, indent=2
    )
