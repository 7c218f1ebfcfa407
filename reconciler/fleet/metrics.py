"""What a platform team asks first of a fleet sharing Slack workspaces and GitLab users: are we
hitting the services' limits, how long do workers wait for the shared budget, how often does a run
give its worker back for a limit, and does the shared cache share. Counters on prometheus_client's
default registry, which the operator serves on its metrics port.

Every label value is bounded and names no tenant: no account, team id, host, group or project path
(a tenant points a Reconcile at any host and names any group). Counting takes prometheus_client's
own lock only: no Valkey command, nothing else on the hot path.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from prometheus_client import Counter

SLACK = "slack-usergroups"
GITLAB = "gitlab-members"
"""`integration` label values: the integrations' names, as in reconciler_operator_runs_total."""
OTHER = "other"
"""A method or read no known name fits (bounded: never the raw value)."""
ERROR = "error"
"""`code` of an attempt that got no answer: connection error, timeout, body cut by the deadline."""

SERVICE_REQUESTS = Counter(
    "reconciler_service_requests",
    "Answers from Slack or GitLab, every attempt (retries included); code 'error': no answer",
    ["integration", "method", "code"],
)
BUDGET_WAIT = Counter(
    "reconciler_rate_budget_wait_seconds",
    "Seconds workers waited in place for the shared rate budget",
    ["integration", "method"],
)
BUDGET_DEFERRED = Counter(
    "reconciler_rate_budget_deferred",
    "Runs that gave their worker back (RateLimited): the budget's wait was longer than a worker may sleep",
    ["integration", "method"],
)
SHARED_READS = Counter(
    "reconciler_shared_reads",
    "Shared reads by outcome: fetched by this process, or shared (fetched by another worker or "
    "replica, or already fresh)",
    ["read", "outcome"],
)

_SLACK_METHOD = re.compile(r"[a-z][A-Za-z]{0,40}(\.[A-Za-z]{1,40}){0,4}")
"""A Web API method name (`usergroups.users.update`); the client's code names them, but a label
takes only what looks like one."""
_VERBS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})
_GITLAB_ENDPOINTS = (
    (re.compile(r"/user"), "/user"),
    (re.compile(r"/users"), "/users"),
    (re.compile(r"/users/[^/]+"), "/users/:id"),
    (re.compile(r"/personal_access_tokens/self"), "/personal_access_tokens/self"),
    (re.compile(r"/groups/[^/]+"), "/groups/:id"),
    (re.compile(r"/projects/[^/]+"), "/projects/:id"),
    (re.compile(r"/groups/[^/]+/members"), "/groups/:id/members"),
    (re.compile(r"/projects/[^/]+/members"), "/projects/:id/members"),
    (re.compile(r"/groups/[^/]+/members/[^/]+"), "/groups/:id/members/:user_id"),
    (re.compile(r"/projects/[^/]+/members/[^/]+"), "/projects/:id/members/:user_id"),
)
"""The REST v4 endpoints reconciler calls, by shape: a path names a group or project (URL-encoded,
so one segment) and a user, which a label must not."""


def answered(integration: str, method: str, status: int | None) -> None:
    """One attempt's answer (`status`), or None when there was none (ERROR)."""
    SERVICE_REQUESTS.labels(integration, method, ERROR if status is None else str(status)).inc()


def slack_method(url: str, base_url: str) -> str:
    """The Web API method a WebClient `url` calls (`base_url` + method, a GET's query after it), as
    a bounded label."""
    url = url.split("?", 1)[0]
    method = url[len(base_url) :] if url.startswith(base_url) else url.rsplit("/", 1)[-1]
    return method if _SLACK_METHOD.fullmatch(method) else OTHER


def gitlab_method(verb: str | None, url: str | None) -> str:
    """`GET /groups/:id/members` for a request to `/api/v4/groups/acme%2Fteam/members?page=2` (the
    API prefix, a base path and the query left out); OTHER for an endpoint reconciler does not call
    (a redirect may point anywhere)."""
    verb = (verb or "").upper()
    verb = verb if verb in _VERBS else OTHER
    path = urlsplit(url or "").path
    prefix = path.find("/api/v4/")
    if prefix >= 0:
        path = path[prefix + len("/api/v4") :]
    path = path.rstrip("/")
    for pattern, shape in _GITLAB_ENDPOINTS:
        if pattern.fullmatch(path):
            return f"{verb} {shape}"
    return f"{verb} {OTHER}"


def budget_waited(integration: str, method: str, seconds: float) -> None:
    BUDGET_WAIT.labels(integration, method).inc(max(0.0, seconds))


def budget_deferred(integration: str, method: str) -> None:
    BUDGET_DEFERRED.labels(integration, method).inc()


def read_fetched(read: str) -> None:
    SHARED_READS.labels(read, "fetched").inc()


def read_shared(read: str, uses: int = 1) -> None:
    if uses > 0:
        SHARED_READS.labels(read, "shared").inc(uses)
