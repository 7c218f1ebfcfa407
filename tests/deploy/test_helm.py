"""The Helm chart: lint, render with several value sets, and check what the cluster would get."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest
import yaml

from reconciler import __version__
from tests.deploy.conftest import CHART, KUBE_VERSION, NAMESPACE, REPO, VALUE_SETS, HelmRun

Render = Callable[[str], list[dict[str, Any]]]
ALL_SETS = sorted(VALUE_SETS)
VALKEY_HOST = f"reconciler-valkey.{NAMESPACE}.svc"
MUTATING = {"create", "update", "patch", "delete", "deletecollection"}


def find(
    docs: list[dict[str, Any]], kind: str, name: str | None = None, namespace: str | None = None
) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["kind"] == kind
        and (name is None or d["metadata"]["name"] == name)
        and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]


def one(
    docs: list[dict[str, Any]], kind: str, name: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    found = find(docs, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {name or ''} {namespace or ''}, got {len(found)}"
    return found[0]


def pod_spec(docs: list[dict[str, Any]], name: str = "reconciler") -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment", name)["spec"]["template"]["spec"]
    return spec


def container(docs: list[dict[str, Any]], name: str, deployment: str = "reconciler") -> dict[str, Any]:
    containers = {c["name"]: c for c in pod_spec(docs, deployment)["containers"]}
    return containers[name]


def env(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def env_value(c: dict[str, Any], name: str) -> str:
    value: str = env(c)[name]["value"]
    return value


def all_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for d in docs if d["kind"] in ("Role", "ClusterRole") for rule in d.get("rules", [])]


def grants(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    return {
        verb for r in rules if group in r["apiGroups"] and resource in r["resources"] for verb in r["verbs"]
    }


# --- lint and schema -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_SETS)
def test_lint_strict(helm_run: HelmRun, name: str) -> None:
    result = helm_run.run(
        "lint",
        "--strict",
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        values=VALUE_SETS[name],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicas": -1}, "replicas"),
        ({"replicas": 0}, "replicas"),
        ({"replicas": "2"}, "replicas"),
        ({"maxWorkers": "x"}, "maxWorkers"),
        ({"maxWorkers": 0}, "maxWorkers"),
        ({"logLevel": "TRACE"}, "logLevel"),
        ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
        ({"watchNamespaces": "team-a"}, "watchNamespaces"),
        ({"surprise": True}, "surprise"),
        ({"image": {"repository": "r", "pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"image": {"repository": "r", "pullPolicy": "Always", "digest": "sha256:0"}}, "digest"),
        ({"valkey": {"url": "http://cache:6379"}}, "url"),
        ({"valkey": {"persistence": True}}, "persistence"),
        ({"metrics": {"serviceMonitor": {"enabled": "yes"}}}, "enabled"),
        ({"metrics": {"operatorPort": 8081}}, "operatorPort"),
        ({"resources": {"operator": {"request": {"cpu": "1"}}}}, "request"),
        ({"serviceAccount": {"create": True, "nam": "x"}}, "nam"),
    ],
)
def test_bad_values_fail(helm_run: HelmRun, values: dict[str, Any], complaint: str) -> None:
    result = helm_run.template(values)
    assert result.returncode != 0, f"{values} rendered:\n{result.stdout[:400]}"
    assert "schema" in result.stderr.lower(), result.stderr
    assert complaint in result.stderr, result.stderr


def test_no_valkey_at_all_fails(helm_run: HelmRun) -> None:
    result = helm_run.template({"valkey": {"enabled": False}})
    assert result.returncode != 0
    assert "set valkey.url" in result.stderr


# --- what every value set must satisfy -----------------------------------------------------------


@pytest.mark.parametrize("name", ALL_SETS)
def test_validates_against_kubernetes_schemas(render: Render, name: str) -> None:
    unknown = set()
    for doc in render(name):
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unknown.add(doc["kind"])
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}")
    # Only custom resources have no schema in kubernetes-validate.
    assert unknown <= {"ServiceMonitor", "PrometheusRule", "ClusterKopfPeering", "KopfPeering"}


@pytest.mark.parametrize("name", ALL_SETS)
def test_pods_are_hardened(render: Render, name: str) -> None:
    docs = render(name)
    deployments = find(docs, "Deployment")
    assert deployments
    for dep in deployments:
        spec = dep["spec"]["template"]["spec"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] > 0 and pod["fsGroup"] > 0
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["enableServiceLinks"] is False
        mounts_by_volume = {v["name"]: v for v in spec["volumes"]}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert "privileged" not in sc
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
            for m in c["volumeMounts"]:
                volume = mounts_by_volume[m["name"]]
                assert "emptyDir" in volume or (m.get("readOnly") and "secret" in volume)
    reconciler = pod_spec(docs)
    assert reconciler["securityContext"]["runAsUser"] == 10001
    for c in reconciler["containers"]:
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
        assert env_value(c, "RECONCILER_RUNTIME_DIR").startswith("/tmp/")


@pytest.mark.parametrize("name", ALL_SETS)
def test_rbac_is_least_privilege(render: Render, name: str) -> None:
    docs = render(name)
    rules = all_rules(docs)
    assert rules
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(field, []), rule
        assert "nonResourceURLs" not in rule and "resourceNames" not in rule
        if "secrets" in rule["resources"]:
            assert rule["apiGroups"] == [""] and rule["resources"] == ["secrets"]
            assert rule["verbs"] == ["get"], rule
    assert grants(rules, "", "secrets") == {"get"}
    assert not grants(rules, "", "secrets") & MUTATING
    assert grants(rules, "apiextensions.k8s.io", "customresourcedefinitions") == {"list", "watch"}
    assert grants(rules, "reconciler.dev", "reconciles") == {"get", "list", "watch", "patch"}
    assert grants(rules, "reconciler.dev", "reconciles/status") == {"patch"}
    assert grants(rules, "", "events") == {"create"}
    assert grants(rules, "events.k8s.io", "events") == {"create"}
    # Nothing else: no pods, deployments, configmaps, RBAC escalation...
    resources = {res for r in rules for res in r["resources"]}
    assert resources <= {
        "customresourcedefinitions",
        "reconciles",
        "reconciles/status",
        "events",
        "secrets",
        "clusterkopfpeerings",
        "kopfpeerings",
        "tokenreviews",
        "subjectaccessreviews",
    }
    # The sidecar's reviews (kubernetes auth): create, in a ClusterRole of their own, nothing else.
    reviews = {"tokenreviews", "subjectaccessreviews"}
    auth = [d for d in find(docs, "ClusterRole") if reviews & {x for r in d["rules"] for x in r["resources"]}]
    if env_value(container(docs, "api"), "RECONCILER_API_AUTH") == "kubernetes":
        assert [d["rules"] for d in auth] == [
            [
                {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["subjectaccessreviews"],
                    "verbs": ["create"],
                },
            ]
        ]
    else:
        assert auth == []
    sa = pod_spec(docs)["serviceAccountName"]
    for binding in find(docs, "ClusterRoleBinding") + find(docs, "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
        kind = "ClusterRole" if binding["kind"] == "ClusterRoleBinding" else "Role"
        assert binding["roleRef"]["kind"] == kind
        one(docs, kind, binding["roleRef"]["name"], binding["metadata"].get("namespace"))
    assert not find(docs, "ServiceAccount") or one(docs, "ServiceAccount")["metadata"]["name"] == sa


@pytest.mark.parametrize("name", ALL_SETS)
def test_containers(render: Render, name: str) -> None:
    docs = render(name)
    values = VALUE_SETS[name]
    spec = pod_spec(docs)
    assert [c["name"] for c in spec["containers"]] == ["operator", "api"]
    operator, api = container(docs, "operator"), container(docs, "api")
    assert operator["image"] == api["image"]
    assert operator.get("command") is None and api.get("command") is None  # ENTRYPOINT ["reconciler"]
    assert operator["args"][0] == "run"
    assert operator["args"][-2:] == ["--liveness", "http://0.0.0.0:8081/healthz"]
    insecure = ["--insecure"] if env_value(api, "RECONCILER_API_AUTH") == "none" else []
    assert api["args"] == ["api", "--host", "0.0.0.0", "--port", "8080", *insecure]
    for c in (operator, api):
        e = env(c)
        assert env_value(c, "RECONCILER_MAX_WORKERS") == str(values.get("maxWorkers", 8))
        assert env_value(c, "RECONCILER_LOG_LEVEL") == values.get("logLevel", "INFO")
        assert e["RECONCILER_VALKEY_URL"] == env(operator)["RECONCILER_VALKEY_URL"]
        names = list(e)
        if "VALKEY_PASSWORD" in e:  # $(VALKEY_PASSWORD) only expands from variables defined before
            assert names.index("VALKEY_PASSWORD") < names.index("RECONCILER_VALKEY_URL")
    assert env(operator)["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "RECONCILER_API_TOKEN" not in env(operator)

    # Probes: the sidecar's /healthz and /readyz, Kopf's liveness endpoint on the operator.
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in api["ports"]
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {"name": "liveness", "containerPort": 8081, "protocol": "TCP"} in operator["ports"]
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert "readinessProbe" not in operator

    service = one(docs, "Service", "reconciler")
    assert {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"} in service["spec"]["ports"]
    selector = service["spec"]["selector"]
    labels = one(docs, "Deployment", "reconciler")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()


@pytest.mark.parametrize("name", ALL_SETS)
def test_standalone_only_with_one_replica(render: Render, name: str) -> None:
    docs = render(name)
    replicas = VALUE_SETS[name].get("replicas", 1)
    deployment = one(docs, "Deployment", "reconciler")
    assert deployment["spec"]["replicas"] == replicas
    args = container(docs, "operator")["args"]
    if replicas == 1:
        assert "--standalone" in args
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        assert not find(docs, "CustomResourceDefinition", "clusterkopfpeerings.kopf.dev")
        assert not find(docs, "ClusterKopfPeering") and not find(docs, "KopfPeering")
        assert not grants(all_rules(docs), "kopf.dev", "clusterkopfpeerings")
        assert not grants(all_rules(docs), "kopf.dev", "kopfpeerings")
    else:
        assert "--standalone" not in args
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"


@pytest.mark.parametrize("name", ALL_SETS)
def test_service_monitor_only_when_enabled(render: Render, name: str) -> None:
    docs = render(name)
    enabled = VALUE_SETS[name].get("metrics", {}).get("serviceMonitor", {}).get("enabled", False)
    assert len(find(docs, "ServiceMonitor")) == (1 if enabled else 0)


# --- value sets ----------------------------------------------------------------------------------


def test_default(render: Render) -> None:
    docs = render("default")
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
            "Service",
            "Service",
            "Deployment",
            "Deployment",
            "Secret",
            "NetworkPolicy",
            "NetworkPolicy",
            "PodDisruptionBudget",
        ]
    )
    one(docs, "CustomResourceDefinition", "reconciles.reconciler.dev")
    operator, api = container(docs, "operator"), container(docs, "api")
    assert operator["args"] == ["run", "-A", "--standalone", "--liveness", "http://0.0.0.0:8081/healthz"]
    assert operator["image"] == f"reconciler:{__version__}"
    for c in (operator, api):
        assert env_value(c, "RECONCILER_VALKEY_URL") == f"valkey://{VALKEY_HOST}:6379/0"
        assert env(c)["RECONCILER_VALKEY_PASSWORD"]["valueFrom"] == {
            "secretKeyRef": {"name": "reconciler-valkey", "key": "password"}
        }
    assert "RECONCILER_API_TOKEN" not in env(api)
    assert env_value(api, "RECONCILER_API_AUTH") == "kubernetes"
    assert env_value(api, "RECONCILER_API_DOCS") == "false"
    assert env_value(operator, "RECONCILER_ALLOWED_HOSTS") == "slack.com,gitlab.com"
    assert "RECONCILER_OPERATOR_METRICS_PORT" not in env(operator)
    # Everything runs under the chart's own ServiceAccount, cluster-wide.
    assert pod_spec(docs)["serviceAccountName"] == "reconciler"
    assert not find(docs, "Role") and not find(docs, "RoleBinding")
    assert one(docs, "Service", "reconciler")["spec"]["type"] == "ClusterIP"


def test_in_chart_valkey(render: Render) -> None:
    docs = render("default")
    valkey = container(docs, "valkey", deployment="reconciler-valkey")
    assert valkey["image"] == "valkey/valkey:8.1"
    assert valkey["command"][:2] == ["sh", "-c"]
    assert "exec valkey-server /run/valkey/valkey.conf" in valkey["command"][2]
    assert valkey["args"] == [
        *["--port", "6379", "--dir", "/data"],
        *["--maxmemory", "160mb", "--maxmemory-policy", "volatile-lru", "--appendonly", "yes"],
    ]
    # Bounded below the container's limit, so Valkey refuses writes (outbox) instead of being killed.
    assert _bytes(valkey["args"][5]) < _bytes(valkey["resources"]["limits"]["memory"]) * 0.8
    assert env(valkey)["VALKEY_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "reconciler-valkey", "key": "password"}
    }
    assert {"name": "data", "mountPath": "/data"} in valkey["volumeMounts"]
    assert {"name": "config", "mountPath": "/run/valkey"} in valkey["volumeMounts"]
    data = next(v for v in pod_spec(docs, "reconciler-valkey")["volumes"] if v["name"] == "data")
    assert "emptyDir" in data  # the AOF survives a restarted (OOM-killed) container
    spec = pod_spec(docs, "reconciler-valkey")
    assert spec["securityContext"]["runAsUser"] == 999
    assert spec["automountServiceAccountToken"] is False
    assert one(docs, "Deployment", "reconciler-valkey")["spec"]["strategy"] == {"type": "Recreate"}
    service = one(docs, "Service", "reconciler-valkey")
    assert service["spec"]["ports"] == [
        {"name": "valkey", "port": 6379, "targetPort": "valkey", "protocol": "TCP"}
    ]
    pod_labels = one(docs, "Deployment", "reconciler-valkey")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    # The two Services do not select each other's pods.
    reconciler_labels = one(docs, "Deployment", "reconciler")["spec"]["template"]["metadata"]["labels"]
    assert not one(docs, "Service", "reconciler")["spec"]["selector"].items() <= pod_labels.items()
    assert not service["spec"]["selector"].items() <= reconciler_labels.items()


def _bytes(text: str) -> float:
    units = {"mb": 1e6, "gb": 1e9, "Mi": 2**20, "Gi": 2**30}
    for unit, factor in units.items():
        if text.endswith(unit):
            return float(text.removesuffix(unit)) * factor
    return float(text)


def test_valkey_on_a_persistent_volume(helm_run: HelmRun) -> None:
    result = helm_run.template({"valkey": {"persistence": {"existingClaim": "valkey-data"}}})
    assert result.returncode == 0, result.stderr
    assert "claimName: valkey-data" in result.stdout


def test_external_valkey(render: Render) -> None:
    docs = render("external-valkey")
    assert not find(docs, "Deployment", "reconciler-valkey")
    assert not find(docs, "Service", "reconciler-valkey")
    for name in ("operator", "api"):
        assert (
            env_value(container(docs, name), "RECONCILER_VALKEY_URL") == "valkey://cache.example.svc:6379/2"
        )


def test_valkey_auth(render: Render) -> None:
    docs = render("valkey-auth")
    secret_ref = {"secretKeyRef": {"name": "valkey-pw", "key": "password"}}
    valkey = container(docs, "valkey", deployment="reconciler-valkey")
    assert env(valkey)["VALKEY_PASSWORD"]["valueFrom"] == secret_ref
    assert not find(docs, "Secret")  # the user's Secret, none generated
    for name in ("operator", "api"):
        c = container(docs, name)
        assert env(c)["RECONCILER_VALKEY_PASSWORD"]["valueFrom"] == secret_ref
        assert env_value(c, "RECONCILER_VALKEY_URL") == f"valkey://{VALKEY_HOST}:6379/0"


def test_watch_namespaces(render: Render) -> None:
    docs = render("namespaces")
    assert container(docs, "operator")["args"] == [
        "run",
        "-n",
        "a",
        "-n",
        "b",
        "--standalone",
        "--liveness",
        "http://0.0.0.0:8081/healthz",
    ]
    for ns in ("a", "b"):
        role = one(docs, "Role", "reconciler", ns)
        assert grants(role["rules"], "reconciler.dev", "reconciles") == {"get", "list", "watch", "patch"}
        assert grants(role["rules"], "", "secrets") == {"get"}
        binding = one(docs, "RoleBinding", "reconciler", ns)
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "reconciler",
        }
    assert len(find(docs, "Role")) == 2 and len(find(docs, "RoleBinding")) == 2
    # Cluster-wide: only what Kopf cannot do per namespace.
    cluster_role = one(docs, "ClusterRole", "reconciler")
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["list", "watch"],
        }
    ]


def test_api_token(render: Render) -> None:
    docs = render("api-token")
    api = container(docs, "api")
    assert env(api)["RECONCILER_API_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "reconciler-api", "key": "bearer"}
    }
    # Probes never need the token.
    assert api["readinessProbe"]["httpGet"].get("httpHeaders") is None


def test_replicas_cluster_wide_peering(render: Render) -> None:
    docs = render("replicas-2")
    assert container(docs, "operator")["args"] == ["run", "-A", "--liveness", "http://0.0.0.0:8081/healthz"]
    for crd_name, scope, kind in [
        ("clusterkopfpeerings.kopf.dev", "Cluster", "ClusterKopfPeering"),
        ("kopfpeerings.kopf.dev", "Namespaced", "KopfPeering"),
    ]:
        crd = one(docs, "CustomResourceDefinition", crd_name)
        assert crd["spec"]["group"] == "kopf.dev" and crd["spec"]["scope"] == scope
        assert crd["spec"]["names"]["kind"] == kind
        assert [v["name"] for v in crd["spec"]["versions"]] == ["v1"]
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    peering = one(docs, "ClusterKopfPeering", "reconciler")
    assert peering["apiVersion"] == "kopf.dev/v1"
    assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert not find(docs, "KopfPeering")
    rules = all_rules(docs)
    assert grants(rules, "kopf.dev", "clusterkopfpeerings") == {"get", "list", "watch", "patch"}
    assert not grants(rules, "kopf.dev", "kopfpeerings")


def test_replicas_namespaced_peering(render: Render) -> None:
    docs = render("replicas-2-namespaces")
    assert "--standalone" not in container(docs, "operator")["args"]
    assert not find(docs, "ClusterKopfPeering")
    for ns in ("a", "b"):
        peering = one(docs, "KopfPeering", "reconciler", ns)
        assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
        role = one(docs, "Role", "reconciler", ns)
        assert grants(role["rules"], "kopf.dev", "kopfpeerings") == {"get", "list", "watch", "patch"}
    assert not grants(one(docs, "ClusterRole", "reconciler")["rules"], "kopf.dev", "clusterkopfpeerings")


def test_service_monitor(render: Render) -> None:
    docs = render("service-monitor")
    monitor = one(docs, "ServiceMonitor", "reconciler")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    service = one(docs, "Service", "reconciler")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    sidecar, operator = monitor["spec"]["endpoints"]
    assert sidecar["port"] == "http" and sidecar["path"] == "/metrics"
    assert sidecar["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "reconciler-api", "key": "token"},
    }
    assert operator["port"] == "op-metrics"
    assert {"name": "op-metrics", "port": 9090, "targetPort": "op-metrics", "protocol": "TCP"} in service[
        "spec"
    ]["ports"]
    op = container(docs, "operator")
    assert env_value(op, "RECONCILER_OPERATOR_METRICS_PORT") == "9090"
    assert {"name": "op-metrics", "containerPort": 9090, "protocol": "TCP"} in op["ports"]


def test_kitchen_sink(render: Render) -> None:
    docs = render("kitchen-sink")
    spec = pod_spec(docs)
    operator = container(docs, "operator")
    assert operator["image"] == "registry.example.com/platform/reconciler:1.2.3"
    assert operator["imagePullPolicy"] == "Always"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod_spec(docs, "reconciler-valkey")["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["serviceAccountName"] == "ops" and not find(docs, "ServiceAccount")
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["tolerations"][0]["key"] == "dedicated"
    assert "podAntiAffinity" in spec["affinity"]
    template = one(docs, "Deployment", "reconciler")["spec"]["template"]
    assert template["metadata"]["annotations"] == {"example.com/team": "sre"}
    assert template["metadata"]["labels"]["example.com/tier"] == "ops"
    assert operator["resources"]["limits"] == {"memory": "1Gi"}
    assert container(docs, "api")["resources"]["requests"]["cpu"] == 0.1
    assert env_value(operator, "RECONCILER_TASK_TTL_SECONDS") == "3600"
    assert env_value(operator, "RECONCILER_MAX_WORKERS") == "32"
    valkey = container(docs, "valkey", deployment="reconciler-valkey")
    assert valkey["image"] == "valkey/valkey:8.0"
    assert valkey["args"][-2:] == ["--maxmemory", "100mb"]
    # Peering without creating the (already installed) peering CRDs.
    assert not find(docs, "CustomResourceDefinition", "clusterkopfpeerings.kopf.dev")
    one(docs, "ClusterKopfPeering", "reconciler")


def test_notes(helm_run: HelmRun) -> None:
    result = helm_run.run(
        "install",
        "reconciler",
        str(CHART),
        "--dry-run=client",
        "--namespace",
        NAMESPACE,
        values=VALUE_SETS["api-token"],
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "port-forward svc/reconciler 8080:8080" in notes
    assert "Authorization: Bearer" in notes


def test_crd_is_a_valid_custom_resource_definition() -> None:
    paths = [*(CHART / "crds").glob("*.yaml"), *(REPO / "deploy" / "crds").glob("*.yaml")]
    assert len(paths) == 2
    for path in paths:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert [d["kind"] for d in docs] == ["CustomResourceDefinition"]
        assert docs[0]["apiVersion"] == "apiextensions.k8s.io/v1"
        kubernetes_validate.validate(docs[0], KUBE_VERSION, strict=True)


# --- sharding (docs/scaling.md) -------------------------------------------------------------------

SHARDS = [
    {"name": "a", "selector": "reconciler.dev/shard=a"},
    {"name": "rest", "selector": "reconciler.dev/shard notin (a)"},
]


def render_values(helm_run: HelmRun, values: dict[str, Any]) -> list[dict[str, Any]]:
    result = helm_run.template(values, "--include-crds")
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_shards_are_one_deployment_each_sharing_valkey_and_the_service(helm_run: HelmRun) -> None:
    values = {"shards": SHARDS}
    lint = helm_run.run("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, values=values)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = render_values(helm_run, values)
    for doc in docs:
        with contextlib.suppress(kubernetes_validate.SchemaNotFoundError):  # custom resources
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    assert not find(docs, "Deployment", "reconciler")  # no unsharded operator besides the shards
    service = one(docs, "Service", "reconciler")
    for shard in SHARDS:
        name = f"reconciler-{shard['name']}"
        deployment = one(docs, "Deployment", name)
        assert deployment["spec"]["selector"]["matchLabels"]["reconciler.dev/shard"] == shard["name"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["reconciler.dev/shard"] == shard["name"]
        assert service["spec"]["selector"].items() <= labels.items()  # every shard's sidecar serves
        operator = container(docs, "operator", deployment=name)
        assert env_value(operator, "RECONCILER_SHARD_SELECTOR") == shard["selector"]
        assert env_value(operator, "RECONCILER_PEERING_NAME") == name
        assert env_value(operator, "RECONCILER_VALKEY_URL") == f"valkey://{VALKEY_HOST}:6379/0"
        assert "--standalone" in operator["args"]
    # Two Deployments' selectors never overlap: each owns only its own shard's pods.
    selectors = [one(docs, "Deployment", f"reconciler-{s['name']}")["spec"]["selector"] for s in SHARDS]
    assert selectors[0] != selectors[1]


def test_shards_with_replicas_peer_per_shard(helm_run: HelmRun) -> None:
    docs = render_values(helm_run, {"shards": SHARDS, "replicas": 2})
    assert {d["metadata"]["name"] for d in find(docs, "ClusterKopfPeering")} == {
        "reconciler-a",
        "reconciler-rest",
    }
    assert "--standalone" not in container(docs, "operator", deployment="reconciler-a")["args"]
    docs = render_values(helm_run, {"shards": SHARDS, "replicas": 2, "watchNamespaces": ["team-x", "team-y"]})
    peerings = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in find(docs, "KopfPeering")}
    assert peerings == {(ns, f"reconciler-{s}") for ns in ("team-x", "team-y") for s in ("a", "rest")}


@pytest.mark.parametrize(
    ("shards", "complaint"),
    [
        ([{"name": "a"}], "selector"),
        ([{"name": "A", "selector": "x=y"}], "name"),
        ([{"name": "a", "selector": ""}], "selector"),
        ([{"name": "a", "selector": "x=y", "replicas": 2}], "replicas"),
    ],
)
def test_bad_shards_fail(helm_run: HelmRun, shards: list[dict[str, Any]], complaint: str) -> None:
    result = helm_run.template({"shards": shards})
    assert result.returncode != 0 and complaint in result.stderr, result.stderr


def test_a_shard_name_used_twice_fails(helm_run: HelmRun) -> None:
    result = helm_run.template({"shards": [SHARDS[0], {**SHARDS[1], "name": "a"}]})
    assert result.returncode != 0 and 'the name "a" is used twice' in result.stderr, result.stderr


def test_a_pod_disruption_budget_per_operator_deployment(render: Render, helm_run: HelmRun) -> None:
    docs = render("default")
    pdb = one(docs, "PodDisruptionBudget", "reconciler", NAMESPACE)
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1
    pod_labels = one(docs, "Deployment", "reconciler")["spec"]["template"]["metadata"]["labels"]
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()  # it covers the operator's pods ...
    for deployment in find(docs, "Deployment"):
        if deployment["metadata"]["name"] != "reconciler":  # ... and no other pods (Valkey)
            other = deployment["spec"]["template"]["metadata"]["labels"]
            assert not selector.items() <= other.items()

    sharded = render_values(helm_run, {"shards": SHARDS})
    budgets = find(sharded, "PodDisruptionBudget")
    assert len(budgets) == len(SHARDS)
    for budget in budgets:
        name = budget["metadata"]["name"]
        labels = one(sharded, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()

    off = render_values(helm_run, {"podDisruptionBudget": {"enabled": False}})
    assert find(off, "PodDisruptionBudget") == []


def test_pin_cpu_reaches_the_operator_only_and_is_checked(helm_run: HelmRun) -> None:
    assert "RECONCILER_PIN_CPU" not in env(container(render_values(helm_run, {}), "operator"))
    docs = render_values(helm_run, {"pinCpu": "auto"})
    assert env_value(container(docs, "operator"), "RECONCILER_PIN_CPU") == "auto"
    assert "RECONCILER_PIN_CPU" not in env(container(docs, "api"))  # the sidecar is async
    bad = helm_run.template({"pinCpu": "the fast one"})
    assert bad.returncode != 0 and "pinCpu" in bad.stderr
