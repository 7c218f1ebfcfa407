"""Where `plan` and `apply` find an integration's token without a cluster: an environment variable or a
Secret manifest."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from reconciler.cli.common import fail
from reconciler.cli.manifests import metadata_of, read_documents
from reconciler.credentials import TokenSource, accept_token, token_from_secret
from reconciler.errors import CredentialsNotFound
from reconciler.models.spec import SecretRef

DEFAULT_TOKEN_ENV = "RECONCILER_TOKEN"  # noqa: S105 - the name of a variable, not a token


@dataclass(frozen=True)
class EnvToken:
    """The token from an environment variable (`--token-env`), whatever the secretRef says."""

    variable: str

    def read_token(self, namespace: str, ref: SecretRef) -> SecretStr:
        value = os.environ.get(self.variable, "").strip()
        if not value:
            raise CredentialsNotFound(
                f"environment variable {self.variable} is not set or empty; export the token of Secret "
                f"{namespace}/{ref.name} (key {ref.key!r}) there, or pass --secret-file"
            )
        return accept_token(value)


@dataclass(frozen=True)
class SecretFile:
    """Tokens from a Secret manifest (`--secret-file`): `stringData`, or `data` (base64)."""

    path: str
    secrets: list[dict[str, Any]]

    @classmethod
    def load(cls, path: str) -> SecretFile:
        secrets = [d for d in read_documents(path) if isinstance(d, dict) and d.get("kind") == "Secret"]
        if not secrets:
            fail(f"{path} holds no Secret manifest (kind: Secret)")
        return cls(path, secrets)

    def read_token(self, namespace: str, ref: SecretRef) -> SecretStr:
        return token_from_secret(self._find(namespace, ref), ref, f"Secret {ref.name} in {self.path}")

    def _find(self, namespace: str, ref: SecretRef) -> dict[str, Any]:
        named = [s for s in self.secrets if metadata_of(s).get("name") == ref.name]
        if not named:
            have = ", ".join(sorted(str(metadata_of(s).get("name")) for s in self.secrets))
            raise CredentialsNotFound(
                f"{self.path} holds no Secret named {ref.name!r} (it has: {have}); "
                "spec.credentials.secretRef.name must name the Secret"
            )
        for secret in named:
            if metadata_of(secret).get("namespace") in (None, namespace):
                return secret
        raise CredentialsNotFound(
            f"Secret {ref.name!r} in {self.path} is in namespace {metadata_of(named[0]).get('namespace')!r}, "
            f"not in the Reconcile's namespace {namespace!r}"
        )


def token_source(token_env: str, secret_file: str | None) -> TokenSource:
    return SecretFile.load(secret_file) if secret_file else EnvToken(token_env)
