"""Spec parsing shared by the operator and the CLI, and log redaction."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from pydantic import ValidationError

from reconciler.errors import InvalidSpec
from reconciler.logs import RedactingFilter, redact, register_secret
from reconciler.models.spec import parse_duration
from reconciler.runner import parse_spec
from reconciler.settings import Settings

SLACK = {"apiUrl": "https://slack.example/api/", "usergroups": [{"handle": "a", "name": "A"}]}


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("10m", 600), ("1h30m", 5400), ("500ms", 0.5)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"integration": "jira", "credentials": {"secretRef": {"name": "s"}}}, "unknown integration 'jira'"),
        (
            {"integration": "slack-usergroups", "credentials": {"secretRef": {"name": "s"}}},
            "needs spec.slackUsergroups",
        ),
        (
            {
                "integration": "slack-usergroups",
                "credentials": {"secretRef": {"name": "s"}},
                "slackUsergroups": SLACK,
                "gitlabMembers": {"url": "https://g"},
            },
            "remove spec.gitlabMembers",
        ),
        (
            {"integration": "slack-usergroups", "credentials": {}, "slackUsergroups": SLACK},
            "spec.credentials.secretRef: Field required",
        ),
        (
            {
                "integration": "slack-usergroups",
                "credentials": {"secretRef": {"name": "s"}},
                "interval": "soon",
                "slackUsergroups": SLACK,
            },
            "spec.interval",
        ),
        (
            {
                "integration": "slack-usergroups",
                "credentials": {"secretRef": {"name": "s"}},
                "extra": 1,
                "slackUsergroups": SLACK,
            },
            "unknown field(s) in spec: extra",
        ),
    ],
)
def test_invalid_specs_name_the_problem(spec: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_spec(spec)
    assert message in info.value.message and info.value.permanent


def test_tokens_are_redacted_from_messages_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    register_secret("some-opaque-secret-value")
    assert redact("token xoxb-123-abc and glpat-XyZ_1 and Bearer abc.def") == "token *** and *** and ***"
    logger = logging.getLogger("test.redaction")
    logger.addFilter(RedactingFilter())
    try:
        raise RuntimeError("failed with some-opaque-secret-value")
    except RuntimeError:
        logger.exception("oops %s", "some-opaque-secret-value")
    assert "some-opaque-secret-value" not in caplog.text and "***" in caplog.text
    assert redact("data: c29tZS1vcGFxdWUtc2VjcmV0LXZhbHVl") == "data: ***"  # the Secret's base64 form


def test_errors_inside_an_integration_block_name_the_block() -> None:
    spec = {
        "integration": "slack-usergroups",
        "credentials": {"secretRef": {"name": "s"}},
        "slackUsergroups": {"usergroups": [{"handle": "a", "name": "A", "users": ["not-an-email"]}]},
    }
    with pytest.raises(InvalidSpec) as info:
        parse_spec(spec)
    assert info.value.message.startswith("spec.slackUsergroups.usergroups.0.users.0: String should match")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RECONCILER_HTTP_TIMEOUT_SECONDS", "1e308"),
        ("RECONCILER_HTTP_TIMEOUT_SECONDS", "inf"),
        ("RECONCILER_CACHE_TIMEOUT_SECONDS", "86400"),
        ("RECONCILER_BACKOFF_MAX_SECONDS", "99999999999"),
        ("RECONCILER_INTERVAL_CHECK_SECONDS", "1e12"),
        ("RECONCILER_LOCK_TTL_SECONDS", "999999999"),
        ("RECONCILER_TASK_TTL_SECONDS", "99999999999"),
    ],
)
def test_absurd_timeouts_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert info.value.errors()[0]["loc"] == (variable.removeprefix("RECONCILER_").lower(),)
