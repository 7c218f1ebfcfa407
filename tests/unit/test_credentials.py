"""The one Secret decoder that the operator, `reconciler plan/apply --secret-file` and `doctor` share."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from reconciler.credentials import token_from_secret
from reconciler.errors import CredentialsNotFound
from reconciler.logs import redact
from reconciler.models.spec import SecretRef

REF = SecretRef(name="slack-bot")
WHERE = "Secret team-a/slack-bot"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_data_is_decoded_stripped_and_registered_for_redaction() -> None:
    token = token_from_secret({"data": {"token": b64("  decoded-token-1234\n")}}, REF, WHERE)

    assert token.get_secret_value() == "decoded-token-1234"
    assert redact("sent decoded-token-1234") == "sent ***"


def test_string_data_wins_over_data_as_on_the_api_server() -> None:
    secret = {"stringData": {"token": "plain-token-5678"}, "data": {"token": b64("stale-token-0000")}}

    assert token_from_secret(secret, REF, WHERE).get_secret_value() == "plain-token-5678"


def test_base64_folded_over_lines_is_accepted() -> None:
    encoded = b64("folded-token-abcdefgh")
    folded = f"{encoded[:8]}\n  {encoded[8:]}"

    assert token_from_secret({"data": {"token": folded}}, REF, WHERE).get_secret_value() == (
        "folded-token-abcdefgh"
    )


def test_another_key_is_read_when_the_ref_names_it() -> None:
    ref = SecretRef(name="slack-bot", key="bot")

    assert token_from_secret({"data": {"bot": b64("bot-token-9999")}}, ref, WHERE).get_secret_value() == (
        "bot-token-9999"
    )


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (
            {"data": {"other": b64("x")}, "stringData": {"more": "y"}},
            f"{WHERE} has no key 'token' (it has: more, other); set spec.credentials.secretRef.key",
        ),
        ({}, f"{WHERE} has no key 'token' (it has: none); set spec.credentials.secretRef.key"),
        (
            {"data": {"token": "%%% not base64"}},
            f"{WHERE} key 'token' is not valid base64-encoded UTF-8 text (put plain text under stringData)",
        ),
        (
            {"data": {"token": base64.b64encode(b"\xff\xfe").decode()}},
            f"{WHERE} key 'token' is not valid base64-encoded UTF-8 text (put plain text under stringData)",
        ),
        ({"data": {"token": b64("   ")}}, f"{WHERE} key 'token' is empty"),
        ({"stringData": {"token": ""}}, f"{WHERE} key 'token' is empty"),
        ({"data": ["token"]}, f"{WHERE}: data and stringData must be maps"),
    ],
    ids=["missing-key", "no-data", "bad-base64", "not-utf8", "blank", "empty-string-data", "data-not-a-map"],
)
def test_problems_are_credentials_not_found_naming_the_secret_and_key(
    secret: dict[str, Any], message: str
) -> None:
    with pytest.raises(CredentialsNotFound) as raised:
        token_from_secret(secret, REF, WHERE)

    assert raised.value.reason == "CredentialsNotFound"
    assert raised.value.message == message
