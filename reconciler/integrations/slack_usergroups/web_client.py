"""slack-sdk's WebClient as reconciler uses it: sockets only through the operator's HostPolicy and
the run deadline's guard, and retry handlers that never retry past the run's deadline nor sleep
through a long rate limit (the run gives its worker back instead). Every attempt's answer is
counted by method and status (reconciler_service_requests_total, fleet/metrics.py)."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from pydantic import SecretStr
from slack_sdk import WebClient
from slack_sdk.http_retry import HttpRequest, HttpResponse, RetryState
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from reconciler import deadline
from reconciler.errors import RateLimited
from reconciler.fleet import metrics
from reconciler.integrations.egress import guarded_opener, policy_for
from reconciler.integrations.transport import (
    deadline_opener,
    inline_wait,
    retry_after_seconds,
    sleep_within_deadline,
)
from reconciler.settings import Settings
from reconciler.tenancy import HostPolicy


class AnyServerErrorRetryHandler(ServerErrorRetryHandler):
    """Retries every HTTP 5xx: slack-sdk's own handler retries only 500 and 503, not gateway 502/504."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is not None and 500 <= response.status_code <= 599 and not deadline.current().expired


class DeadlineConnectionErrorRetryHandler(ConnectionErrorRetryHandler):
    """slack-sdk's retry of connection errors, except once the run's deadline has passed."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if deadline.current().expired:
            return False
        return bool(super()._can_retry(state=state, request=request, response=response, error=error))


class InlineRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """Waits out a short Retry-After in place; a long one (or one past the run's deadline) is not
    retried, so the 429 reaches `errors.translate` and the run ends as RateLimited instead of sleeping."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(max_retry_count=settings.rate_limit_retries)
        self._settings = settings
        self._wait = 0.0

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        try:
            self._wait = inline_wait(
                retry_after_seconds(response.headers if response else None), "", self._settings
            )
        except RateLimited:
            return False
        return True

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.next_attempt_requested = True
        sleep_within_deadline(self._wait)
        state.increment_current_attempt()


class GuardedWebClient(WebClient):
    """WebClient whose sockets go through the operator's HostPolicy and the run deadline's guard,
    kept alive between calls where the policy applies (egress.guarded_opener); slack-sdk has no hook
    for its opener, so the one method that opens URLs is replaced. It is also the one place that
    sees every attempt (slack-sdk's retries loop around it): each answer is counted there."""

    opener: urllib.request.OpenerDirector | None = None

    def _perform_urllib_http_request_internal(self, url: str, req: urllib.request.Request) -> dict[str, Any]:
        method = metrics.slack_method(url, self.base_url)
        try:
            answer = self._open(url, req)
        except urllib.error.HTTPError as exc:  # 4xx/5xx: slack-sdk reads it and retries or raises
            metrics.answered(metrics.SLACK, method, exc.code)
            raise
        except Exception:  # no answer: connection error, timeout, a body the deadline cut
            metrics.answered(metrics.SLACK, method, None)
            raise
        metrics.answered(metrics.SLACK, method, int(answer["status"]))
        return answer

    def _open(self, url: str, req: urllib.request.Request) -> dict[str, Any]:
        if self.opener is None:
            return super()._perform_urllib_http_request_internal(url, req)
        with self.opener.open(req, timeout=self.timeout) as resp:
            body: bytes = resp.read()
            charset = resp.headers.get_content_charset() or "utf-8"
            return {"status": resp.status, "headers": resp.headers, "body": body.decode(charset, "replace")}


def web_client(
    token: SecretStr,
    api_url: str,
    settings: Settings,
    policy: HostPolicy | None,
    *,
    inline_rate_limits: bool,
) -> GuardedWebClient:
    """The WebClient of one SlackClient. `policy`: connect only through it; default: the settings'
    allow-list where enforced. `inline_rate_limits`: wait out a short 429 in place (without a fleet;
    with one, 429s go through the shared budget: everyone waits, nobody sleeps long)."""
    rate_limit_handlers: list[RateLimitErrorRetryHandler] = []
    if inline_rate_limits:
        rate_limit_handlers.append(InlineRateLimitRetryHandler(settings))
    web = GuardedWebClient(
        token=token.get_secret_value(),
        base_url=api_url,
        timeout=int(max(1, settings.http_timeout_seconds)),
        retry_handlers=[
            DeadlineConnectionErrorRetryHandler(max_retry_count=settings.transient_retries),
            AnyServerErrorRetryHandler(max_retry_count=settings.transient_retries),
            *rate_limit_handlers,
        ],
    )
    policy = policy or policy_for(settings)
    # Either opener lets the run deadline cut a slow answer (transport.DeadlineGuard).
    web.opener = guarded_opener(policy, web.ssl) if policy is not None else deadline_opener(web.ssl)
    return web
