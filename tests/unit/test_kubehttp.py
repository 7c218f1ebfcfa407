"""The operator's own Kubernetes API client (kubehttp, over urllib3) on Kopf's login: TLS verified
with Kopf's SSL context, kept-alive connections, the environment's proxy, failures as one error."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import kopf
import pytest
import trustme
import urllib3

from reconciler_operator.kubehttp import KubeHttp, KubeHttpError, _environment_proxy
from reconciler_testing.slack import SlackTestServer
from tests.valkey_server import free_port

PATH = "/api/auth.test"
"""A path the TLS test server answers (HTTP 200, with Slack's verdict on the token sent)."""


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https(ca: trustme.CA) -> Iterator[SlackTestServer]:
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    server = SlackTestServer()
    server.tls = server_tls
    with server:
        yield server


def server_url(server: SlackTestServer) -> str:
    return server.api_url.removesuffix("/api/")


def test_tls_is_verified_with_kopfs_ca_and_connections_are_kept(
    https: SlackTestServer, ca: trustme.CA
) -> None:
    login = kopf.ConnectionInfo(server=server_url(https), ca_data=ca.cert_pem.bytes().decode(), token="t0ken")
    client = KubeHttp.from_connection(login, timeout=5)
    try:
        for _ in range(3):
            answer = client.get(PATH)
            # Kopf's token went along (the server read it, and refused this one).
            assert answer.status_code == 200 and answer.json()["error"] == "invalid_auth"
    finally:
        client.close()
    assert https.connections == 1


def test_an_untrusted_certificate_fails_unless_kopfs_login_is_insecure(https: SlackTestServer) -> None:
    untrusting = KubeHttp.from_connection(kopf.ConnectionInfo(server=server_url(https)), timeout=5)
    with pytest.raises(KubeHttpError, match="SSLError"):
        untrusting.get(PATH)
    login = kopf.ConnectionInfo(server=server_url(https), insecure=True)
    insecure = KubeHttp.from_connection(login, timeout=5)
    with pytest.warns(urllib3.exceptions.InsecureRequestWarning):  # as asked: said, not refused
        assert insecure.get(PATH).status_code == 200


def test_no_answer_is_one_error_naming_its_kind() -> None:
    login = kopf.ConnectionInfo(server=f"http://127.0.0.1:{free_port()}")
    client = KubeHttp.from_connection(login, timeout=5)
    with pytest.raises(KubeHttpError, match="NewConnectionError"):
        client.get(PATH)


def test_the_environments_proxy_is_used_unless_no_proxy_exempts_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert _environment_proxy("https://10.0.0.1:443") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.com:3128")
    assert _environment_proxy("https://10.0.0.1:443") == "http://proxy.example.com:3128"
    assert _environment_proxy("http://10.0.0.1:8080") is None  # no proxy for plain HTTP
    monkeypatch.setenv("NO_PROXY", "10.0.0.1,.cluster.local")
    assert _environment_proxy("https://10.0.0.1:443") is None
    assert _environment_proxy("https://kubernetes.default.svc.cluster.local") is None
    assert _environment_proxy("https://api.example.com") == "http://proxy.example.com:3128"
