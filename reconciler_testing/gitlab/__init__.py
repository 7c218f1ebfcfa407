"""Local GitLab REST API v4 server for tests and benchmarks.

Why: the operator talks to GitLab through the real ``python-gitlab`` client, and mocks of that client
prove nothing about URLs, pagination, retries or error bodies. This server speaks the small part of
the v4 API the operator uses (users, groups, projects, group and project members), with the status
codes, error bodies and pagination headers that GitLab's own code and documentation describe, so
``gitlab.Gitlab(server.url, private_token=...)`` can be pointed at it unchanged.

Modules: `state` (the data and hierarchy rules), `members` (entities and member writes), `routes`
(URL space, tokens, read handlers), `paging` (offset pagination), `api` (error bodies, parameter
coercion), `server` (HTTP, faults, throttling, call log; on `reconciler_testing.harness`).

Run it standalone for benchmarks::

    python -m reconciler_testing.gitlab --port 8929 --latency 0.05 --seed-file state.json

Seed file (all keys optional)::

    {"users": [{"username": "alice", "name": "Alice", "state": "active"}],
     "tokens": [{"token": "t0k", "username": "alice", "scopes": ["api"]}],
     "groups": ["acme", "acme/platform"],
     "projects": ["acme/platform/api"],
     "members": [{"kind": "group", "path": "acme", "username": "alice", "access_level": 50}]}
"""

from __future__ import annotations

from reconciler_testing.gitlab.cli import main
from reconciler_testing.gitlab.server import Call, GitLabTestServer
from reconciler_testing.gitlab.state import (
    DEVELOPER,
    GUEST,
    MAINTAINER,
    MINIMAL_ACCESS,
    OWNER,
    PLANNER,
    REPORTER,
)

__all__ = [
    "DEVELOPER",
    "GUEST",
    "MAINTAINER",
    "MINIMAL_ACCESS",
    "OWNER",
    "PLANNER",
    "REPORTER",
    "Call",
    "GitLabTestServer",
    "main",
]
