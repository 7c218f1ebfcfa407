"""The requests session python-gitlab sends through: the token kept from other hosts, every request
cut to the run's deadline, sockets only through the operator's HostPolicy, and urllib3's bounded
retry of connection errors, timeouts and 5xx (429s are python-gitlab's, counted separately)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import gitlab.const
import requests

from reconciler import deadline
from reconciler.integrations.egress import GuardedAdapter, policy_for
from reconciler.integrations.transport import DeadlineAdapter, DeadlineRetry
from reconciler.settings import Settings
from reconciler.tenancy import HostPolicy


class GitlabSession(requests.Session):
    """requests strips `Authorization` on a redirect to another host; do the same for PRIVATE-TOKEN.

    Every request (retries and redirects included) gets min(its timeout, time left of the run).
    """

    before_send: Callable[[], None] | None = None
    """Draws one request from the shared rate budget (set when the run has a fleet)."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if self.before_send is not None:
            self.before_send()
        timeout = kwargs.get("timeout")
        call_timeout = float(max(timeout) if isinstance(timeout, tuple) else timeout or 30.0)
        kwargs["timeout"] = deadline.current().timeout(call_timeout, "calling GitLab")
        return super().send(request, **kwargs)

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        old_url, new_url = response.request.url, prepared_request.url
        if old_url and new_url and self.should_strip_auth(old_url, new_url):  # type: ignore[no-untyped-call]
            prepared_request.headers.pop("PRIVATE-TOKEN", None)


def gitlab_session(settings: Settings, policy: HostPolicy | None) -> GitlabSession:
    """The session of one GitlabClient. `policy`: connect only through it; default: the settings'
    allow-list where enforced."""
    session = GitlabSession()
    policy = policy or policy_for(settings)
    adapter_cls = functools.partial(GuardedAdapter, policy) if policy is not None else DeadlineAdapter
    if policy is not None:
        session.trust_env = False  # a proxy from the environment would resolve names unchecked
    adapter = adapter_cls(
        max_retries=DeadlineRetry(
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
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
