"""Where a run's integration token comes from: the one TokenSource protocol, and the one Secret decoder.

The operator reads Secrets from the API server, `reconciler plan/apply` from an environment variable or a
Secret manifest, `reconciler doctor` checks them: all decode a Secret here, with the same words.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import SecretStr

from reconciler.errors import CredentialsNotFound
from reconciler.logs import register_secret
from reconciler.models.spec import SecretRef


class TokenSource(Protocol):
    """The token that a Reconcile's `spec.credentials.secretRef` names, registered for redaction.

    Raises a ReconcileError (CredentialsNotFound, Forbidden, a TransientError) when there is none."""

    def read_token(self, namespace: str, ref: SecretRef) -> SecretStr: ...


def accept_token(value: str) -> SecretStr:
    """A token from outside: registered first, so no log line, status or record can show it."""
    register_secret(value)
    return SecretStr(value)


def token_from_secret(secret: Mapping[str, Any], ref: SecretRef, where: str) -> SecretStr:
    """The token under `ref.key` of a Secret object, stripped and non-empty; `where` names the Secret in
    errors (CredentialsNotFound).

    `stringData` wins over `data`, as on the API server: only manifests carry it (the API server
    returns `data` alone), and `data` may be base64 folded over several lines, as YAML allows."""
    string_data, data = secret.get("stringData") or {}, secret.get("data") or {}
    if not isinstance(string_data, Mapping) or not isinstance(data, Mapping):
        raise CredentialsNotFound(f"{where}: data and stringData must be maps")
    if ref.key in string_data:
        token = str(string_data[ref.key]).strip()
    elif ref.key in data:
        token = _decode_base64(data[ref.key], ref.key, where).strip()
    else:
        keys = ", ".join(sorted({str(k) for k in (*string_data, *data)})) or "none"
        raise CredentialsNotFound(
            f"{where} has no key {ref.key!r} (it has: {keys}); set spec.credentials.secretRef.key"
        )
    if not token:
        raise CredentialsNotFound(f"{where} key {ref.key!r} is empty")
    return accept_token(token)


def _decode_base64(value: object, key: str, where: str) -> str:
    try:
        return base64.b64decode("".join(str(value).split()), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CredentialsNotFound(
            f"{where} key {key!r} is not valid base64-encoded UTF-8 text (put plain text under stringData)"
        ) from None
