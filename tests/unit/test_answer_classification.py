"""One classification of answers that are not the service's JSON, for both integrations, with the real
clients against the test servers: an HTML page, a cut-off or empty body is transient (retried with
backoff); 401 and 403 are permanent whatever the body. No part of such a body reaches a message."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pydantic import SecretStr

from reconciler.errors import ReconcileError
from reconciler.integrations.gitlab_members.client import GitlabClient
from reconciler.integrations.slack_usergroups.client import SlackClient
from reconciler.settings import Settings
from reconciler_testing.gitlab import GitLabTestServer
from reconciler_testing.slack import SlackTestServer

SETTINGS = Settings(transient_retries=0, rate_limit_retries=0, http_timeout_seconds=5)
PAGE = b"<html><body><h1>Bad Gateway</h1><p>secret-looking-page-text</p></body></html>"
CUT_JSON = b'{"ok": true, "usergroups": [{"id": "S1", "han'

# (name, body, HTTP status, truncated connection, reason, permanent)
CASES = [
    ("html-200", PAGE, 200, False, "BadResponse", False),
    ("html-404", PAGE, 404, False, "BadResponse", False),
    ("html-502", PAGE, 502, False, None, False),  # <Service>Unavailable
    ("empty-200", b"", 200, False, "BadResponse", False),
    ("cut-json", CUT_JSON, 200, False, "BadResponse", False),
    ("cut-connection", CUT_JSON, 200, True, None, False),
    ("html-401", PAGE, 401, False, "Unauthorized", True),
    ("html-403", PAGE, 403, False, "Forbidden", True),
]

Inject = Callable[[bytes, int, bool], None]


@pytest.fixture(scope="module")
def slack() -> Iterator[tuple[Inject, Callable[[], object]]]:
    with SlackTestServer() as server:
        server.add_token("xoxb-classify-token-1111111111")
        client = SlackClient(SecretStr("xoxb-classify-token-1111111111"), server.api_url, SETTINGS)

        def inject(body: bytes, status: int, truncated: bool) -> None:
            server.answer_raw("usergroups.list", 1, body, status=status, truncated=truncated)

        yield inject, lambda: client.list_usergroups([])


@pytest.fixture(scope="module")
def gitlab() -> Iterator[tuple[Inject, Callable[[], object]]]:
    with GitLabTestServer() as server:
        server.add_user("bot")
        server.add_token("glpat-classify-token-11111111", username="bot")
        client = GitlabClient(server.url, SecretStr("glpat-classify-token-11111111"), SETTINGS)

        def inject(body: bytes, status: int, truncated: bool) -> None:
            server.answer_raw(1, body, status=status, truncated=truncated)

        yield inject, client.current_user
        client.close()


@pytest.mark.parametrize("service", ["slack", "gitlab"])
@pytest.mark.parametrize(
    ("name", "body", "status", "truncated", "reason", "permanent"), CASES, ids=[c[0] for c in CASES]
)
def test_unreadable_answers_are_classified_alike(
    request: pytest.FixtureRequest,
    service: str,
    name: str,
    body: bytes,
    status: int,
    truncated: bool,
    reason: str | None,
    permanent: bool,
) -> None:
    inject, call = request.getfixturevalue(service)
    inject(body, status, truncated)
    with pytest.raises(ReconcileError) as info:
        call()
    error = info.value
    assert error.permanent is permanent, (name, error)
    expected = {"slack": "SlackUnavailable", "gitlab": "GitLabUnavailable"}[service]
    assert error.reason == (reason or expected), (name, error)
    assert "secret-looking-page-text" not in error.message and "<html" not in error.message
