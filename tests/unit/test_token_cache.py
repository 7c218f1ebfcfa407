"""The operator's Secret reads for runs (CachedTokens over the real SecretReader and the emulator):
a token read serves the runs of the next RECONCILER_SECRET_CACHE_SECONDS, failures are never kept,
and a change (new token, removed credentials label, deleted Secret) applies once that time is over."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import kopf
import pytest

from reconciler.errors import CredentialsNotFound, ReconcileError
from reconciler.models.spec import SecretRef
from reconciler_operator.credentials import SecretReader
from reconciler_operator.token_cache import CachedTokens
from tests.kube import KubeApi

NS = "tokens"
REF = SecretRef(name="bot")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kube() -> Iterator[KubeApi]:
    api = KubeApi().start()
    api.add_namespace(NS)
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def reader(kube: KubeApi) -> Iterator[SecretReader]:
    secrets = SecretReader()
    secrets.use(kopf.ConnectionInfo(server=kube.url))
    try:
        yield secrets
    finally:
        secrets.close()


def set_secret(kube: KubeApi, patch: dict[str, object]) -> None:
    kube._check(
        kube._client().patch(
            f"/api/v1/namespaces/{NS}/secrets/bot",
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        )
    )


def test_a_token_read_serves_the_next_seconds_then_the_secret_is_read_again(
    kube: KubeApi, reader: SecretReader
) -> None:
    clock = Clock()
    tokens = CachedTokens(reader, ttl_seconds=5, clock=clock)
    kube.create_secret(NS, "bot", {"token": "first-token"})
    assert tokens.read_token(NS, REF).get_secret_value() == "first-token"
    set_secret(kube, {"data": {"token": base64.b64encode(b"second-token").decode()}})
    clock.now += 4.9
    assert tokens.read_token(NS, REF).get_secret_value() == "first-token"  # kept: no GET
    clock.now += 0.2
    assert tokens.read_token(NS, REF).get_secret_value() == "second-token"
    # A removed credentials label applies as soon as the kept token is too old.
    set_secret(kube, {"metadata": {"labels": {"reconciler.dev/credentials": None}}})
    clock.now += 5
    with pytest.raises(ReconcileError) as refused:
        tokens.read_token(NS, REF)
    assert refused.value.reason == "CredentialsNotAllowed"


def test_failures_are_never_kept(kube: KubeApi, reader: SecretReader) -> None:
    clock = Clock()
    tokens = CachedTokens(reader, ttl_seconds=5, clock=clock)
    with pytest.raises(CredentialsNotFound):
        tokens.read_token(NS, REF)
    kube.create_secret(NS, "bot", {"token": "now-there"})
    assert tokens.read_token(NS, REF).get_secret_value() == "now-there"  # same instant: read again
    with pytest.raises(CredentialsNotFound):
        tokens.read_token(NS, SecretRef(name="bot", key="other"))  # another key is its own entry
    with pytest.raises(CredentialsNotFound):
        tokens.read_token("elsewhere", REF)  # another namespace too


def test_zero_reads_the_secret_every_run(kube: KubeApi, reader: SecretReader) -> None:
    tokens = CachedTokens(reader, ttl_seconds=0, clock=Clock())
    kube.create_secret(NS, "bot", {"token": "first-token"})
    assert tokens.read_token(NS, REF).get_secret_value() == "first-token"
    set_secret(kube, {"data": {"token": base64.b64encode(b"second-token").decode()}})
    assert tokens.read_token(NS, REF).get_secret_value() == "second-token"
