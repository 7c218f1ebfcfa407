"""The largest Reconcile the CRD accepts: every list at its maxItems, every string at its maxLength.

The limits are read from the CRD itself, so raising one without checking the object size budget
fails tests/unit/test_largest_object.py. Used by that unit test and by an e2e test that runs it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from reconciler.crd import load_crd, openapi_schema
from tests.builders import gitlab_reconcile, slack_reconcile
from tests.crd_validation import CRD_PATH, iter_schemas


@cache
def limits() -> dict[str, int]:
    """`spec.slackUsergroups.usergroups` -> 8, `...users[]` -> 80: maxItems and maxLength by path."""
    spec = openapi_schema(load_crd(CRD_PATH))["properties"]["spec"]
    found: dict[str, int] = {}
    for path, schema in iter_schemas(spec, "spec"):
        for key in ("maxItems", "maxLength"):
            if key in schema:
                found[path] = int(schema[key])
    return found


def _text(prefix: str, length: int, index: int) -> str:
    """`prefix` + zero-padded `index`, padded with `x` to exactly `length` characters."""
    tail = f"{index:05d}"
    return prefix + "x" * (length - len(prefix) - len(tail)) + tail


def largest_emails() -> list[str]:
    n = limits()["spec.slackUsergroups.usergroups[].users"]
    length = limits()["spec.slackUsergroups.usergroups[].users[]"]
    domain = "@example.com"
    return [_text("u", length - len(domain), i) + domain for i in range(n)]


def largest_channels() -> list[str]:
    n = limits()["spec.slackUsergroups.usergroups[].channels"]
    length = limits()["spec.slackUsergroups.usergroups[].channels[]"]
    return ["#" + _text("c", length - 1, i) for i in range(n)]


def largest_slack_reconcile(name: str, namespace: str, api_url: str) -> dict[str, Any]:
    lim = limits()
    prefix = "spec.slackUsergroups.usergroups"
    groups = [
        {
            "handle": _text("h", lim[f"{prefix}[].handle"], g),
            "name": _text("Group ", lim[f"{prefix}[].name"], g),
            "description": _text("d", lim[f"{prefix}[].description"], g),
            "users": largest_emails(),
            "channels": largest_channels(),
        }
        for g in range(lim[prefix])
    ]
    return slack_reconcile(name, namespace, api_url, groups, interval="1h")


def largest_gitlab_reconcile(name: str, namespace: str, url: str) -> dict[str, Any]:
    lim = limits()

    def sources(kind: str) -> list[dict[str, Any]]:
        prefix = f"spec.gitlabMembers.{kind}"
        path_length = lim[f"{prefix}[].path"]
        return [
            {
                "path": "a/" + _text("p", path_length - 2, s),
                "members": [
                    {
                        "username": _text("u", lim[f"{prefix}[].members[].username"], m),
                        "accessLevel": "maintainer",
                        "expiresAt": "2027-01-31",
                    }
                    for m in range(lim[f"{prefix}[].members"])
                ],
            }
            for s in range(lim[prefix])
        ]

    return gitlab_reconcile(name, namespace, url, sources("groups"), sources("projects"), interval="1h")
