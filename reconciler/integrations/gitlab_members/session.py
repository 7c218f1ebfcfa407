"""The requests session python-gitlab sends through: the token kept from other hosts, every request
cut to the run's deadline, sockets only through the operator's HostPolicy, and urllib3's bounded
retry of connection errors, timeouts and 5xx (429s are python-gitlab's, counted separately).

Every attempt's answer is counted by endpoint shape and status (reconciler_service_requests_total,
fleet/metrics.py): an attempt urllib3 retries by its Retry, every other one by a response hook.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Self

import gitlab.const
import requests
import urllib3

from reconciler import deadline
from reconciler.fleet import metrics
from reconciler.integrations.egress import GuardedAdapter, policy_for
from reconciler.integrations.transport import DeadlineAdapter, DeadlineRetry
from reconciler.settings import Settings
from reconciler.tenancy import HostPolicy


class GitlabSession(requests.Session):
    """requests strips `Authorization` on a redirect to another host; do the same for PRIVATE-TOKEN.

    Every request (retries and redirects included) gets min(its timeout, time left of the run).
    """

    before_send: Callable[[requests.PreparedRequest], None] | None = None
    """Draws one request from the shared rate budget (set when the run has a fleet)."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if self.before_send is not None:
            self.before_send(request)
        timeout = kwargs.get("timeout")
        call_timeout = float(max(timeout) if isinstance(timeout, tuple) else timeout or 30.0)
        kwargs["timeout"] = deadline.current().timeout(call_timeout, "calling GitLab")
        return super().send(request, **kwargs)

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        old_url, new_url = response.request.url, prepared_request.url
        if old_url and new_url and self.should_strip_auth(old_url, new_url):  # type: ignore[no-untyped-call]
            prepared_request.headers.pop("PRIVATE-TOKEN", None)


class CountingRetry(DeadlineRetry):
    """Counts the attempts urllib3 retries (a connection error, a timeout, a 5xx); the last attempt
    reaches requests and is counted by `count_answer` (an error: here, as requests gets no answer)."""

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: urllib3.BaseHTTPResponse | None = None,
        error: Exception | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Self:
        if response is None:
            metrics.answered(metrics.GITLAB, metrics.gitlab_method(method, url), None)
        retry = super().increment(method, url, response, error, *args, **kwargs)
        if response is not None:  # retried (else raised above: requests gets this answer)
            metrics.answered(metrics.GITLAB, metrics.gitlab_method(method, url), response.status)
        return retry


def count_answer(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """The response hook counting each answer requests gets (redirects included), once its body is
    read: a body cut short (by the run's deadline) counts as no answer."""
    method = metrics.gitlab_method(response.request.method, response.request.url)
    try:
        _ = response.content  # requests reads it right after the hooks (python-gitlab never streams)
    except requests.RequestException:
        metrics.answered(metrics.GITLAB, method, None)
        raise
    metrics.answered(metrics.GITLAB, method, response.status_code)


def gitlab_session(settings: Settings, policy: HostPolicy | None) -> GitlabSession:
    """The session of one GitlabClient. `policy`: connect only through it; default: the settings'
    allow-list where enforced."""
    session = GitlabSession()
    policy = policy or policy_for(settings)
    adapter_cls = functools.partial(GuardedAdapter, policy) if policy is not None else DeadlineAdapter
    if policy is not None:
        session.trust_env = False  # a proxy from the environment would resolve names unchecked
    adapter = adapter_cls(
        max_retries=CountingRetry(
            total=settings.transient_retries,
            status_forcelist=gitlab.const.RETRYABLE_TRANSIENT_ERROR_CODES,
            allowed_methods=None,  # writes too: add/remove are made idempotent by the callers
            backoff_factor=0.25,
            backoff_max=5,
            raise_on_status=False,  # the last 5xx answer reaches python-gitlab and is translated
            raise_on_redirect=False,
            respect_retry_after_header=False,  # 429s are python-gitlab's, counted separately
        )
    )
    session.hooks["response"].append(count_answer)  # first: before the client's 429 hook
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
