"""The chart's security defaults: a closed Valkey, NetworkPolicies, the sidecar's auth and reviews RBAC,
the operator's allowed hosts."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.deploy.conftest import NAMESPACE, VALUE_SETS
from tests.deploy.test_helm import container, env, env_value, find, one, pod_spec

Render = Callable[[str], list[dict[str, Any]]]
ALL_SETS = sorted(VALUE_SETS)
RECONCILER_POD = {"app.kubernetes.io/name": "reconciler", "app.kubernetes.io/instance": "reconciler"}
VALKEY_POD = {"app.kubernetes.io/name": "valkey", "app.kubernetes.io/instance": "reconciler"}


@pytest.mark.parametrize("name", ALL_SETS)
def test_valkey_password_is_in_no_command_line(render: Render, name: str) -> None:
    docs = render(name)
    generated = [base64.b64decode(s["data"]["password"]).decode() for s in find(docs, "Secret")]
    for deployment in find(docs, "Deployment"):
        for c in deployment["spec"]["template"]["spec"]["containers"]:
            command_line = json.dumps(c.get("command", []) + c.get("args", []))
            assert "requirepass" not in json.dumps(c.get("args", []))
            assert (
                "$(VALKEY_PASSWORD)" not in command_line
                and "$(RECONCILER_VALKEY_PASSWORD)" not in command_line
            )
            assert not any(password in command_line for password in generated)
            for variable in c.get("env", []):  # from Secrets only, never a literal value
                if "PASSWORD" in variable["name"]:
                    assert "value" not in variable and "secretKeyRef" in variable["valueFrom"]
            assert "@" not in env(c).get("RECONCILER_VALKEY_URL", {}).get("value", "")


def test_generated_valkey_password(render: Render) -> None:
    docs = render("default")
    secret = one(docs, "Secret", "reconciler-valkey")
    assert len(base64.b64decode(secret["data"]["password"])) == 40
    valkey = container(docs, "valkey", deployment="reconciler-valkey")
    script = valkey["command"][2]
    assert "umask 077" in script and "unset VALKEY_PASSWORD" in script
    config = {v["name"]: v for v in pod_spec(docs, "reconciler-valkey")["volumes"]}["config"]
    assert config["emptyDir"]["medium"] == "Memory"


def test_valkey_network_policy_lets_only_the_reconciler_pod_in(render: Render) -> None:
    docs = render("default")
    policy = one(docs, "NetworkPolicy", "reconciler-valkey")
    assert policy["spec"]["podSelector"]["matchLabels"] == VALKEY_POD
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": RECONCILER_POD}}],
            "ports": [{"port": 6379, "protocol": "TCP"}],
        }
    ]
    # The selectors match the pods they mean, and nothing else of the release.
    valkey_labels = one(docs, "Deployment", "reconciler-valkey")["spec"]["template"]["metadata"]["labels"]
    reconciler_labels = one(docs, "Deployment", "reconciler")["spec"]["template"]["metadata"]["labels"]
    assert VALKEY_POD.items() <= valkey_labels.items() and not RECONCILER_POD.items() <= valkey_labels.items()
    assert RECONCILER_POD.items() <= reconciler_labels.items()
    assert not find(render("api-open"), "NetworkPolicy", "reconciler-valkey")
    assert not find(render("external-valkey"), "NetworkPolicy", "reconciler-valkey")


def test_sidecar_network_policy_allows_what_the_values_name(render: Render) -> None:
    default = one(render("default"), "NetworkPolicy", "reconciler")
    assert default["spec"]["podSelector"]["matchLabels"] == RECONCILER_POD
    assert default["spec"]["ingress"] == [
        {"from": [{"namespaceSelector": {}}], "ports": [{"port": "http", "protocol": "TCP"}]}
    ]
    monitoring = one(render("api-monitoring-only"), "NetworkPolicy", "reconciler")
    assert monitoring["spec"]["ingress"] == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
            "ports": [{"port": "http", "protocol": "TCP"}, {"port": "op-metrics", "protocol": "TCP"}],
        }
    ]
    closed = one(render("api-open"), "NetworkPolicy", "reconciler")
    assert closed["spec"]["ingress"] == [] and closed["spec"]["policyTypes"] == ["Ingress"]


def test_sidecar_auth_modes(render: Render) -> None:
    docs = render("default")
    api = container(docs, "api")
    assert env_value(api, "RECONCILER_API_AUTH") == "kubernetes"
    assert env_value(api, "RECONCILER_API_DOCS") == "false"
    binding = one(docs, "ClusterRoleBinding", "reconciler-api-auth")
    assert binding["roleRef"]["name"] == "reconciler-api-auth"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "reconciler", "namespace": NAMESPACE}]

    token = render("api-token")
    assert env_value(container(token, "api"), "RECONCILER_API_AUTH") == "token"
    assert not find(token, "ClusterRole", "reconciler-api-auth")

    open_ = render("api-open")
    assert env_value(container(open_, "api"), "RECONCILER_API_AUTH") == "none"
    assert container(open_, "api")["args"][-1] == "--insecure"
    assert env_value(container(open_, "api"), "RECONCILER_API_DOCS") == "true"


def test_allowed_hosts_reach_the_operator(render: Render) -> None:
    operator = container(render("api-monitoring-only"), "operator")
    assert env_value(operator, "RECONCILER_ALLOWED_HOSTS") == "slack.com,*.gitlab.example.com,10.0.0.5:443"
    assert "RECONCILER_ALLOWED_HOSTS" not in env(container(render("default"), "api"))


def test_external_valkey_over_tls_with_a_ca_bundle(render: Render) -> None:
    docs = render("valkey-tls")
    assert not find(docs, "Deployment", "reconciler-valkey") and not find(docs, "Secret")
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert volumes["valkey-ca"]["secret"] == {
        "secretName": "valkey-ca",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    for name in ("operator", "api"):
        c = container(docs, name)
        assert env_value(c, "RECONCILER_VALKEY_URL") == "rediss://cache.example.svc:6380/0"
        assert env_value(c, "RECONCILER_VALKEY_CA_FILE") == "/etc/reconciler/valkey-ca/ca.crt"
        assert env(c)["RECONCILER_VALKEY_PASSWORD"]["valueFrom"] == {
            "secretKeyRef": {"name": "valkey-pw", "key": "password"}
        }
        mount = {"name": "valkey-ca", "mountPath": "/etc/reconciler/valkey-ca", "readOnly": True}
        assert mount in c["volumeMounts"]
