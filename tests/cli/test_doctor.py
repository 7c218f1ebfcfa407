"""`reconciler doctor` against the Kubernetes API emulator, a real valkey-server and the Slack/GitLab
test servers: each check passes when it should, and fails with a line that says what to do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler import crd
from reconciler.doctor.checks import operator_rules
from reconciler_testing.gitlab import GitLabTestServer
from reconciler_testing.slack import DEFAULT_SCOPES, SlackTestServer
from tests import builders
from tests.cli.conftest import CliRun
from tests.kube import KubeApi
from tests.valkey_server import ValkeyProcess

NS = "team-doctor"
SLACK_TOKEN = "xoxb-doctor-token-1357913579"
READ_ONLY = "xoxb-doctor-read-only-24682468"
GITLAB_TOKEN = "glpat-doctor-token-ABCDEFGH"
GITLAB_READ = "glpat-doctor-read-api-IJKLMNOP"


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeApi]:
    api = KubeApi().start()
    api.add_namespace(NS)
    yield api
    api.stop()


@pytest.fixture(scope="module")
def world(kube: KubeApi) -> Iterator[tuple[SlackTestServer, GitLabTestServer]]:
    with SlackTestServer() as slack, GitLabTestServer() as gitlab:
        slack.add_token(SLACK_TOKEN)
        slack.add_token(READ_ONLY, DEFAULT_SCOPES - {"usergroups:write"})
        slack.add_user("alice@example.com")
        gitlab.add_user("bot")
        gitlab.add_token(GITLAB_TOKEN, username="bot")
        gitlab.add_token(GITLAB_READ, username="bot", scopes=("read_api",))
        kube.create_secret(NS, "slack", {"token": SLACK_TOKEN})
        kube.create_secret(NS, "slack-read-only", {"token": READ_ONLY})
        kube.create_secret(NS, "wrong-key", {"other": SLACK_TOKEN})
        kube.create_secret(NS, "gitlab", {"token": GITLAB_TOKEN})
        kube.create_secret(NS, "gitlab-read", {"token": GITLAB_READ})
        kube.create_secret(NS, "unlabelled", {"token": SLACK_TOKEN}, credentials_label=False)
        group = [{"handle": "oncall", "name": "On-call", "users": ["alice@example.com"]}]
        for name, secret in (
            ("slack", "slack"),
            ("read-only", "slack-read-only"),
            ("wrong-key", "wrong-key"),
            ("unlabelled", "unlabelled"),
        ):
            kube.create_reconcile(builders.slack_reconcile(name, NS, slack.api_url, group, secret=secret))
        kube.create_reconcile(
            builders.slack_reconcile("dry", NS, slack.api_url, group, secret="slack-read-only", dryRun=True)
        )
        members = [{"path": "acme", "members": [{"username": "bot", "accessLevel": "owner"}]}]
        for name in ("gitlab", "gitlab-read"):
            kube.create_reconcile(builders.gitlab_reconcile(name, NS, gitlab.url, members, secret=name))
        yield slack, gitlab


@pytest.fixture
def doctor_env(
    kube: KubeApi, valkey_server: ValkeyProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> KubeApi:
    monkeypatch.setenv("KUBECONFIG", str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    monkeypatch.setenv("RECONCILER_VALKEY_URL", valkey_server.url)
    monkeypatch.setenv("RECONCILER_ALLOWED_HOSTS", "127.0.0.1")
    return kube


def install_crd(kube: KubeApi, doc: dict[str, Any]) -> None:
    assert kube.http is not None
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    kube.http.delete(f"{path}/{doc['metadata']['name']}")
    assert kube.http.post(path, json=doc).status_code < 300


def doctor(cli: CliRun, *args: str) -> tuple[int, dict[str, dict[str, str]]]:
    result = cli("doctor", *args, "-o", "json")
    report = json.loads(result.stdout)
    assert report["ok"] is (result.exit_code == 0)
    return result.exit_code, {check["name"]: check for check in report["checks"]}


def test_all_pass_on_a_healthy_install(cli: CliRun, doctor_env: KubeApi, world: object) -> None:
    install_crd(doctor_env, crd.load_crd())
    result = cli("doctor", "rec/slack", "-n", NS)

    assert result.exit_code == 0, result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].startswith("✓ cluster: reachable at http://127.0.0.1")
    assert "✓ crd: installed, and equal to this version's CRD" in lines
    assert any(
        line.startswith("✓ rbac: all 10 verbs the operator uses are allowed in namespace") for line in lines
    )
    valkey = next(line for line in lines if line.startswith("✓ valkey:"))
    assert "maxmemory-policy" in valkey and "using" in valkey
    assert f"✓ secret: Secret {NS}/slack exists and has a value under key 'token'" in lines
    assert "✓ token: works: a token of Slack workspace T0001" in lines
    assert f"✓ secret-allowed: Secret {NS}/slack is labelled as credentials the operator may use" in lines
    assert any(line.startswith("✓ hosts: spec.slackUsergroups.apiUrl http://127.0.0.1:") for line in lines)
    assert "✓ scopes: has usergroups:read, usergroups:write, users:read, users:read.email" in result.stdout
    assert SLACK_TOKEN not in result.stdout + result.stderr


def test_token_without_the_write_scope_fails_unless_dry_run(
    cli: CliRun, doctor_env: KubeApi, world: object
) -> None:
    install_crd(doctor_env, crd.load_crd())
    code, checks = doctor(cli, "rec/read-only", "-n", NS)
    assert code == 1
    assert checks["scopes"]["status"] == "fail"
    assert checks["scopes"]["message"].startswith("missing usergroups:write to apply this spec")

    code, checks = doctor(cli, "rec/dry", "-n", NS)
    assert code == 0
    assert checks["scopes"]["status"] == "ok"


def test_gitlab_scopes_come_from_the_token_itself(cli: CliRun, doctor_env: KubeApi, world: object) -> None:
    install_crd(doctor_env, crd.load_crd())
    code, checks = doctor(cli, "rec/gitlab", "-n", NS)
    assert code == 0, checks
    assert checks["token"]["message"].startswith("works: GitLab user bot at http://")
    assert checks["scopes"]["message"] == "has api: all it needs to apply this spec"

    code, checks = doctor(cli, "rec/gitlab-read", "-n", NS)
    assert code == 1
    assert checks["scopes"]["message"] == "missing api to apply this spec (the token has: read_api)"


def test_secret_without_the_key_and_missing_reconcile(
    cli: CliRun, doctor_env: KubeApi, world: object
) -> None:
    install_crd(doctor_env, crd.load_crd())
    code, checks = doctor(cli, "rec/wrong-key", "-n", NS)
    assert code == 1
    assert checks["secret"]["message"] == f"Secret {NS}/wrong-key has no usable key 'token' (it has: other)"
    assert checks["token"]["status"] == "skipped"

    code, checks = doctor(cli, "rec/nope", "-n", NS)
    assert code == 1
    assert checks["reconcile"]["message"] == f"Reconcile {NS}/nope does not exist"


def test_crd_skew_and_denied_rbac_fail_with_what_to_do(
    cli: CliRun, doctor_env: KubeApi, world: object
) -> None:
    old = crd.load_crd()
    old["spec"]["versions"][0]["additionalPrinterColumns"] = []
    install_crd(doctor_env, old)
    assert doctor_env.emulator is not None
    doctor_env.emulator.denied.update(
        {("patch", "reconciler.dev", "reconciles/status"), ("get", "", "secrets")}
    )
    try:
        code, checks = doctor(cli, "-n", NS)
    finally:
        doctor_env.emulator.denied.clear()
    assert code == 1
    assert "version skew" in checks["crd"]["message"]
    assert "spec.versions[0].additionalPrinterColumns has 0 items" in checks["crd"]["message"]
    assert checks["rbac"]["message"].startswith(
        f"denied in namespace {NS}: patch reconciles/status.reconciler.dev, get secrets"
    )


def test_missing_peering_rights_only_warn(cli: CliRun, doctor_env: KubeApi, world: object) -> None:
    install_crd(doctor_env, crd.load_crd())
    assert doctor_env.emulator is not None
    doctor_env.emulator.denied.add(("patch", "kopf.dev", "clusterkopfpeerings"))
    try:
        code, checks = doctor(cli)
    finally:
        doctor_env.emulator.denied.clear()
    assert code == 0
    assert checks["rbac-peering"]["status"] == "warn"
    assert checks["rbac"]["message"] == "all 10 verbs the operator uses are allowed in every namespace"


def test_every_rule_of_the_chart_is_reviewed(cli: CliRun, doctor_env: KubeApi, world: object) -> None:
    install_crd(doctor_env, crd.load_crd())
    assert doctor_env.emulator is not None
    rules = operator_rules()
    for rule in rules["cluster"] + rules["namespaced"]:
        for verb in rule["verbs"]:
            key = (verb, rule["apiGroups"][0], rule["resources"][0])
            doctor_env.emulator.denied.add(key)
            try:
                code, checks = doctor(cli, "-n", NS)
            finally:
                doctor_env.emulator.denied.clear()
            assert code == 1, key
            assert f"{verb} {rule['resources'][0]}" in checks["rbac"]["message"]


def test_no_cluster_and_no_valkey(cli: CliRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.kube import write_kubeconfig
    from tests.valkey_server import free_port

    monkeypatch.setenv(
        "KUBECONFIG", str(write_kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{free_port()}"))
    )
    monkeypatch.setenv("RECONCILER_VALKEY_URL", f"valkey://127.0.0.1:{free_port()}/0")
    result = cli("doctor", "rec/x", "-n", NS)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("✗ cluster: cannot reach the API server at http://127.0.0.1:")
    assert "- crd: skipped: the cluster is not reachable" in lines
    assert any(line.startswith("✗ valkey: valkey://127.0.0.1:") for line in lines)
    assert "Traceback" not in result.stdout + result.stderr


def test_unlabelled_secret_is_not_allowed_and_its_token_not_used(
    cli: CliRun, doctor_env: KubeApi, world: tuple[SlackTestServer, GitLabTestServer]
) -> None:
    install_crd(doctor_env, crd.load_crd())
    slack, _ = world
    slack.reset_calls()
    code, checks = doctor(cli, "rec/unlabelled", "-n", NS)
    assert code == 1
    assert checks["secret-allowed"]["message"].startswith(
        f'CredentialsNotAllowed: Secret {NS}/unlabelled is not labelled reconciler.dev/credentials: "true"'
    )
    assert checks["token"]["status"] == "skipped"
    assert slack.calls == []


def test_host_not_allowed_fails_and_no_token_is_sent(
    cli: CliRun,
    doctor_env: KubeApi,
    world: tuple[SlackTestServer, GitLabTestServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_crd(doctor_env, crd.load_crd())
    slack, _ = world
    monkeypatch.setenv("RECONCILER_ALLOWED_HOSTS", "slack.com")
    slack.reset_calls()
    code, checks = doctor(cli, "rec/slack", "-n", NS)
    assert code == 1
    assert checks["hosts"]["message"].startswith("HostNotAllowed: spec.slackUsergroups.apiUrl: 127.0.0.1:")
    assert checks["secret"]["status"] == "ok"
    assert checks["token"]["message"] == "skipped: the token is not sent to a host that is not allowed"
    assert slack.calls == []
