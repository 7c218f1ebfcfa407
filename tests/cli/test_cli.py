"""`reconciler plan`, `apply` and `status` through the real entry points: the Typer app (CliRunner) and
the installed console script, against the Slack and GitLab test servers and a real sidecar process."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.cache import ValkeyCache
from reconciler.claims import ClaimOwner, claim_key
from reconciler.cli import plan_apply as cli_module
from reconciler.integrations.slack_usergroups.models import slack_usergroup_target
from reconciler.models.base import ActionRecord
from reconciler.models.task import ReconcileRef, TaskError, TaskRecord, TaskStatus, utcnow
from reconciler_testing.gitlab import DEVELOPER, MAINTAINER, OWNER, GitLabTestServer
from reconciler_testing.slack import TEAM_ID, SlackTestServer
from tests.cli.conftest import (
    API_TOKEN,
    GITLAB_TOKEN,
    NS,
    SLACK_TOKEN,
    CliRun,
    Sidecar,
    WriteManifests,
    gitlab_reconcile,
    reconciler_executable,
    secret,
    slack_reconcile,
)
from tests.valkey_server import ValkeyProcess, free_port

ONCALL = {
    "handle": "sre-oncall",
    "name": "SRE On-call",
    "users": ["alice@example.com", "bob@example.com"],
    "channels": ["sre"],
}
RESULT_KEYS = {"namespace", "name", "integration", "dryRun", "status", "actions", "error"}


def _json(text: str) -> list[dict[str, Any]]:
    data = json.loads(text)
    assert isinstance(data, list)
    return data


def _only(text: str) -> dict[str, Any]:
    (result,) = _json(text)
    return result


def _plain_env() -> dict[str, str]:
    """The environment for a console-script run: no RECONCILER_* and no colour/terminal overrides."""
    overrides = ("RECONCILER_", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")
    return {k: v for k, v in os.environ.items() if not k.startswith(overrides)}


def _seed_oncall(slack: SlackTestServer) -> None:
    slack.load_seed({"usergroups": [ONCALL]})


# --- plan ---


def test_plan_without_changes_exits_0(
    cli: CliRun, slack: SlackTestServer, write_manifests: WriteManifests
) -> None:
    _seed_oncall(slack)
    path = write_manifests(slack_reconcile("oncall", slack.api_url, [ONCALL]))

    result = cli("plan", "-f", str(path), "-o", "json")

    assert result.exit_code == 0, result.output
    assert _only(result.stdout) == {
        "namespace": NS,
        "name": "oncall",
        "integration": "slack-usergroups",
        "dryRun": False,
        "status": "no-changes",
        "actions": [],
        "error": None,
    }
    table = cli("plan", "-f", str(path))
    assert table.exit_code == 0
    assert f"{NS}/oncall" in table.stdout and "no changes" in table.stdout


def test_plan_with_changes_exits_2_and_writes_nothing(
    cli: CliRun, slack: SlackTestServer, write_manifests: WriteManifests
) -> None:
    path = write_manifests(slack_reconcile("oncall", slack.api_url, [ONCALL], dryRun=True))
    slack.reset_calls()

    result = cli("plan", "-f", str(path), "-o", "json")

    assert result.exit_code == 2, result.output
    plan = _only(result.stdout)
    assert set(plan) == RESULT_KEYS
    assert (plan["status"], plan["dryRun"], plan["error"]) == ("changes", True, None)
    assert plan["actions"] == [
        {"type": "create_usergroup", "target": "sre-oncall", "detail": "name 'SRE On-call', channels #sre"},
        {"type": "add_users", "target": "sre-oncall", "detail": "alice@example.com, bob@example.com"},
    ]
    for action in plan["actions"]:
        assert set(action) == {"type", "target", "detail"}
    assert slack.write_calls() == []
    assert slack.usergroups() == []


def test_plan_markdown_for_a_merge_request_comment(
    cli: CliRun, slack: SlackTestServer, write_manifests: WriteManifests
) -> None:
    path = write_manifests(slack_reconcile("oncall", slack.api_url, [ONCALL]))

    result = cli("plan", "-f", str(path), "-o", "markdown")

    assert result.exit_code == 2, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "## Reconcile plan"
    assert f"### `{NS}/oncall` (slack-usergroups): 2 changes" in lines
    header = lines.index("| Type | Target | Detail |")
    assert lines[header + 1] == "| --- | --- | --- |"
    assert lines[header + 2] == "| `create_usergroup` | `sre-oncall` | name 'SRE On-call', channels #sre |"
    assert lines[header + 3] == "| `add_users` | `sre-oncall` | alice@example.com, bob@example.com |"


def test_plan_table_is_the_default(
    cli: CliRun, slack: SlackTestServer, write_manifests: WriteManifests
) -> None:
    path = write_manifests(slack_reconcile("oncall", slack.api_url, [ONCALL]))

    result = cli("plan", "-f", str(path))

    assert result.exit_code == 2
    for text in (f"{NS}/oncall", "2 changes", "create_usergroup", "add_users", "bob@example.com"):
        assert text in result.stdout


def test_bad_manifest_exits_1_naming_the_field(
    cli: CliRun, slack: SlackTestServer, write_manifests: WriteManifests
) -> None:
    bad = {**ONCALL, "users": ["not-an-email", "bob@example.com"]}
    path = write_manifests(slack_reconcile("oncall", slack.api_url, [bad]))
    slack.reset_calls()

    result = cli("plan", "-f", str(path), "-o", "json")

    assert result.exit_code == 1, result.output
    plan = _only(result.stdout)
    assert plan["status"] == "error" and plan["actions"] == []
    assert plan["error"]["reason"] == "InvalidSpec"
    # The API server's wording and field path, as `kubectl apply` would print them.
    assert (
        'spec.slackUsergroups.usergroups[0].users[0]: Invalid value: "not-an-email"'
        in plan["error"]["message"]
    )
    assert slack.calls == []  # invalid specs never reach Slack


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda doc: doc.update(apiVersion="reconciler.dev/v1"),
            'apiVersion: Unsupported value: "reconciler.dev/v1"',
        ),
        (lambda doc: doc["metadata"].update(name="Bad_Name"), "metadata.name: Invalid value"),
        (lambda doc: doc["metadata"].update(namespace="team.sre"), "metadata.namespace: Invalid value"),
        (lambda doc: doc.update(extra=True), 'unknown field "extra"'),
        (lambda doc: doc["spec"].pop("credentials"), "spec.credentials: Required value"),
        (lambda doc: doc["spec"].update(integration="jira"), 'spec.integration: Unsupported value: "jira"'),
        (
            lambda doc: doc["spec"]["slackUsergroups"]["usergroups"].append(dict(ONCALL)),
            "spec.slackUsergroups.usergroups[1]: Duplicate value",
        ),
        # What the CRD checks with CEL rules, the spec model checks at run time:
        (lambda doc: doc["spec"].update(interval="0s"), "interval must be longer than zero"),
        (lambda doc: doc["spec"].update(interval="99999999999999h"), "spec.interval"),
        (lambda doc: doc["spec"].update(interval="8761h"), "spec.interval: '8761h' is longer than 8760h"),
        (
            lambda doc: doc["spec"].update(integration="gitlab-members"),
            "integration gitlab-members needs spec.gitlabMembers",
        ),
    ],
    ids=[
        "apiVersion",
        "name",
        "namespace",
        "unknown-field",
        "credentials",
        "integration",
        "duplicate-handle",
        "zero-interval",
        "overflowing-interval",
        "too-long-interval",
        "missing-block",
    ],
)
def test_invalid_manifests_are_invalid_spec(
    cli: CliRun, write_manifests: WriteManifests, change: Any, expected: str
) -> None:
    doc = slack_reconcile("oncall", "http://127.0.0.1:9/api/", [dict(ONCALL)])
    change(doc)
    path = write_manifests(doc)

    result = cli("plan", "-f", str(path), "-o", "json")

    assert result.exit_code == 1, result.output
    error = _only(result.stdout)["error"]
    assert error["reason"] == "InvalidSpec"
    assert expected in error["message"]


def test_unknown_user_exits_1_with_unknown_users(
    cli: CliRun, slack: SlackTestServer, write_manifests: WriteManifests
) -> None:
    group = {**ONCALL, "users": ["alice@example.com", "nobody@example.com"]}
    path = write_manifests(slack_reconcile("oncall", slack.api_url, [group]))

    result = cli("plan", "-f", str(path), "-o", "json")

    assert result.exit_code == 1, result.output
    error = _only(result.stdout)["error"]
    assert error["reason"] == "UnknownUsers"
    assert "nobody@example.com" in error["message"]
    table = cli("plan", "-f", str(path))
    assert table.exit_code == 1 and "UnknownUsers" in table.stdout


def test_rejected_token_is_unauthorized_and_never_printed(
    cli: CliRun, slack: SlackTestServer, write_manifests: WriteManifests, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "xoxb-wrong-token-9876543210"
    monkeypatch.setenv("RECONCILER_TOKEN", wrong)
    path = write_manifests(slack_reconcile("oncall", slack.api_url, [ONCALL]))

    result = cli("plan", "-f", str(path), "-o", "json", "--verbose")

    assert result.exit_code == 1
    assert _only(result.stdout)["error"]["reason"] == "Unauthorized"
    assert "DEBUG" in result.stderr  # --verbose logged the client layer...
    assert wrong not in result.output  # ...without the token


def test_missing_token_variable_is_credentials_not_found(
    cli: CliRun, slack: SlackTestServer, write_manifests: WriteManifests
) -> None:
    path = write_manifests(slack_reconcile("oncall", slack.api_url, [ONCALL]))

    result = cli("plan", "-f", str(path), "-o", "json", "--token-env", "NO_SUCH_VARIABLE_HERE")

    assert result.exit_code == 1
    error = _only(result.stdout)["error"]
    assert error["reason"] == "CredentialsNotFound"
    assert "NO_SUCH_VARIABLE_HERE" in error["message"]


def test_token_env_names_the_variable(
    cli: CliRun, slack: SlackTestServer, write_manifests: WriteManifests, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECONCILER_TOKEN")
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    path = write_manifests(slack_reconcile("oncall", slack.api_url, [ONCALL]))

    assert cli("plan", "-f", str(path), "--token-env", "SLACK_BOT_TOKEN").exit_code == 2


@pytest.mark.parametrize(
    "fields",
    [
        {"stringData": {"token": SLACK_TOKEN}},
        {"data": {"token": base64.b64encode(SLACK_TOKEN.encode()).decode()}},
        {
            "data": {"token": base64.b64encode(b"xoxb-overridden").decode()},
            "stringData": {"token": SLACK_TOKEN},
        },
    ],
    ids=["stringData", "data", "stringData-wins"],
)
def test_secret_file(
    cli: CliRun,
    slack: SlackTestServer,
    write_manifests: WriteManifests,
    monkeypatch: pytest.MonkeyPatch,
    fields: dict[str, Any],
) -> None:
    monkeypatch.delenv("RECONCILER_TOKEN")
    manifest = write_manifests(slack_reconcile("oncall", slack.api_url, [ONCALL]))
    secrets = write_manifests(
        secret("other-bot", stringData={"token": "x"}), secret("slack-bot", **fields), name="secrets.yaml"
    )

    result = cli("plan", "-f", str(manifest), "--secret-file", str(secrets), "-o", "json")

    assert result.exit_code == 2, result.output
    assert _only(result.stdout)["status"] == "changes"
    assert SLACK_TOKEN not in result.output


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (secret("another-name", stringData={"token": SLACK_TOKEN}), "no Secret named 'slack-bot'"),
        (secret("slack-bot", stringData={"other": SLACK_TOKEN}), "has no key 'token' (it has: other)"),
        (secret("slack-bot", data={"token": "%%% not base64"}), "not valid base64"),
        (secret("slack-bot", stringData={"token": "  "}), "is empty"),
        (secret("slack-bot", namespace="elsewhere", stringData={"token": SLACK_TOKEN}), "namespace"),
    ],
    ids=["wrong-name", "wrong-key", "bad-base64", "empty", "other-namespace"],
)
def test_secret_file_problems_are_credentials_not_found(
    cli: CliRun, slack: SlackTestServer, write_manifests: WriteManifests, doc: dict[str, Any], expected: str
) -> None:
    manifest = write_manifests(slack_reconcile("oncall", slack.api_url, [ONCALL]))
    secrets = write_manifests(doc, name="secret.yaml")

    result = cli("plan", "-f", str(manifest), "--secret-file", str(secrets), "-o", "json")

    assert result.exit_code == 1
    error = _only(result.stdout)["error"]
    assert error["reason"] == "CredentialsNotFound"
    assert expected in error["message"]
    assert SLACK_TOKEN not in result.output
    assert slack.calls == []


def test_multiple_documents_and_files(
    cli: CliRun, slack: SlackTestServer, write_manifests: WriteManifests
) -> None:
    _seed_oncall(slack)
    leads = {"handle": "sre-leads", "name": "SRE Leads", "users": ["carol@example.com"]}
    first = write_manifests(
        secret("slack-bot", stringData={"token": SLACK_TOKEN}),
        slack_reconcile("oncall", slack.api_url, [ONCALL]),
        slack_reconcile("leads", slack.api_url, [leads], namespace="team-leads"),
        name="first.yaml",
    )
    unnamespaced = slack_reconcile("third", slack.api_url, [ONCALL])
    del unnamespaced["metadata"]["namespace"]
    second = write_manifests(unnamespaced, name="second.yaml")

    result = cli("plan", "-f", str(first), "-f", str(second), "-o", "json", "-n", "fallback")

    assert result.exit_code == 2, result.output
    plans = {(p["namespace"], p["name"]): p["status"] for p in _json(result.stdout)}
    assert plans == {
        (NS, "oncall"): "no-changes",
        ("team-leads", "leads"): "changes",
        ("fallback", "third"): "no-changes",
    }
    assert "skipping Secret slack-bot" in result.stderr

    # One bad document fails the whole check (exit 1), but the others are still planned.
    broken = slack_reconcile("broken", slack.api_url, [{**ONCALL, "handle": "Not A Handle"}])
    mixed = write_manifests(broken, slack_reconcile("leads", slack.api_url, [leads]), name="mixed.yaml")
    result = cli("plan", "-f", str(mixed), "-o", "json")
    assert result.exit_code == 1
    assert [(p["name"], p["status"]) for p in _json(result.stdout)] == [
        ("broken", "error"),
        ("leads", "changes"),
    ]


def test_plan_reads_stdin(cli: CliRun, slack: SlackTestServer) -> None:
    text = json.dumps(slack_reconcile("oncall", slack.api_url, [ONCALL]))  # JSON is YAML too

    result = cli("plan", "-f", "-", "-o", "json", input=text)

    assert result.exit_code == 2, result.output
    assert _only(result.stdout)["name"] == "oncall"


def test_files_without_a_reconcile_or_unreadable_fail(
    cli: CliRun, write_manifests: WriteManifests, tmp_path: Path
) -> None:
    only_secret = write_manifests(secret("slack-bot", stringData={"token": "x"}))
    result = cli("plan", "-f", str(only_secret))
    assert result.exit_code == 1 and "no Reconcile found" in result.stderr

    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Reconcile\n  bad: [indent\n")
    result = cli("plan", "-f", str(broken))
    assert result.exit_code == 1 and "not valid YAML" in result.stderr

    result = cli("plan", "-f", str(tmp_path / "missing.yaml"))
    assert result.exit_code == 1 and "cannot read" in result.stderr


def test_usage_errors_of_plan_exit_1_not_2(cli: CliRun) -> None:
    """2 means "changes planned": a CI job must not mistake a bad command line for it."""
    assert cli("plan").exit_code == 1
    assert cli("plan", "-f", "x.yaml", "--no-such-option").exit_code == 1
    assert cli("plan", "-f", "x.yaml", "-o", "yaml").exit_code == 1


# --- apply ---


def test_apply_converges_then_plan_exits_0(
    cli: CliRun, slack: SlackTestServer, write_manifests: WriteManifests
) -> None:
    path = write_manifests(slack_reconcile("oncall", slack.api_url, [ONCALL]))

    result = cli("apply", "-f", str(path), "--yes", "-o", "json")

    assert result.exit_code == 0, result.output
    applied = _only(result.stdout)
    assert applied["status"] == "changes" and applied["error"] is None
    assert [a["type"] for a in applied["applied"]] == ["create_usergroup", "add_users"]
    group = slack.usergroup("sre-oncall")
    assert group["name"] == "SRE On-call" and len(group["users"]) == 2

    again = cli("plan", "-f", str(path), "-o", "json")
    assert again.exit_code == 0, again.output
    assert _only(again.stdout)["status"] == "no-changes"


def test_apply_prints_what_it_applied(
    cli: CliRun, slack: SlackTestServer, write_manifests: WriteManifests
) -> None:
    path = write_manifests(slack_reconcile("oncall", slack.api_url, [ONCALL]))

    result = cli("apply", "-f", str(path), "--yes")

    assert result.exit_code == 0, result.output
    assert "Applied:" in result.stdout and "2 changes applied" in result.stdout


def test_apply_without_yes_on_a_pipe_refuses(
    cli: CliRun, slack: SlackTestServer, write_manifests: WriteManifests
) -> None:
    path = write_manifests(slack_reconcile("oncall", slack.api_url, [ONCALL]))
    slack.reset_calls()

    result = cli("apply", "-f", str(path), input="y\n")

    assert result.exit_code == 1
    assert "--yes" in result.stderr and "nothing was applied" in result.stderr
    assert slack.write_calls() == []


@pytest.mark.parametrize(("answer", "code", "groups"), [("y\n", 0, 1), ("n\n", 1, 0)])
def test_apply_asks_on_a_terminal(
    cli: CliRun,
    slack: SlackTestServer,
    write_manifests: WriteManifests,
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    code: int,
    groups: int,
) -> None:
    monkeypatch.setattr(cli_module, "_stdin_is_tty", lambda: True)
    path = write_manifests(slack_reconcile("oncall", slack.api_url, [ONCALL]))

    result = cli("apply", "-f", str(path), input=answer)

    assert result.exit_code == code, result.output
    assert "Apply these changes?" in result.output
    assert len(slack.usergroups()) == groups


def test_apply_respects_dry_run_and_suspend(
    cli: CliRun, slack: SlackTestServer, write_manifests: WriteManifests
) -> None:
    path = write_manifests(
        slack_reconcile("dry", slack.api_url, [ONCALL], dryRun=True),
        slack_reconcile(
            "suspended", slack.api_url, [{**ONCALL, "handle": "other", "name": "Other"}], suspend=True
        ),
    )
    slack.reset_calls()

    result = cli("apply", "-f", str(path), "-o", "json")  # nothing to apply: no confirmation needed

    assert result.exit_code == 0, result.output
    results = _json(result.stdout)
    assert [(r["status"], r["applied"]) for r in results] == [("changes", []), ("changes", [])]
    assert f"{NS}/dry: spec.dryRun is true" in result.stderr
    assert f"{NS}/suspended: spec.suspend is true" in result.stderr
    assert slack.write_calls() == []


def test_apply_failure_exits_1(cli: CliRun, slack: SlackTestServer, write_manifests: WriteManifests) -> None:
    group = {**ONCALL, "users": ["nobody@example.com"]}
    path = write_manifests(slack_reconcile("oncall", slack.api_url, [group]))

    result = cli("apply", "-f", str(path), "--yes", "-o", "json")

    assert result.exit_code == 1
    assert _only(result.stdout)["error"]["reason"] == "UnknownUsers"
    assert slack.write_calls() == []


def test_gitlab_plan_apply_plan(
    cli: CliRun, gitlab: GitLabTestServer, write_manifests: WriteManifests, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITLAB_TOKEN", GITLAB_TOKEN)
    groups = [
        {
            "path": "acme/platform",
            "members": [
                {"username": "alice", "accessLevel": "maintainer"},
                {"username": "bob", "accessLevel": "developer", "expiresAt": "2099-01-31"},
                {"username": "reconciler-bot", "accessLevel": "owner"},
            ],
        }
    ]
    path = write_manifests(gitlab_reconcile("platform", gitlab.url, groups))

    plan = cli("plan", "-f", str(path), "--token-env", "GITLAB_TOKEN", "-o", "json")
    assert plan.exit_code == 2, plan.output
    assert sorted(a["type"] for a in _only(plan.stdout)["actions"]) == ["add_member", "add_member"]
    assert gitlab.write_calls() == []

    applied = cli("apply", "-f", str(path), "--token-env", "GITLAB_TOKEN", "--yes")
    assert applied.exit_code == 0, applied.output
    levels = {user: m["access_level"] for user, m in gitlab.members("group", "acme/platform").items()}
    assert levels == {"reconciler-bot": OWNER, "alice": MAINTAINER, "bob": DEVELOPER}

    assert cli("plan", "-f", str(path), "--token-env", "GITLAB_TOKEN").exit_code == 0
    unknown = write_manifests(
        gitlab_reconcile(
            "platform",
            gitlab.url,
            [{"path": "acme/platform", "members": [{"username": "nobody", "accessLevel": "developer"}]}],
        ),
        name="unknown.yaml",
    )
    failed = cli("plan", "-f", str(unknown), "--token-env", "GITLAB_TOKEN", "-o", "json")
    assert failed.exit_code == 1
    assert _only(failed.stdout)["error"]["reason"] == "UnknownUsers"
    assert GITLAB_TOKEN not in plan.output + applied.output + failed.output


# --- the console script, as a CI job runs it ---


def test_console_script_plan_and_apply(slack: SlackTestServer, write_manifests: WriteManifests) -> None:
    path = write_manifests(slack_reconcile("oncall", slack.api_url, [ONCALL]))
    env = _plain_env()
    env["RECONCILER_TOKEN"] = SLACK_TOKEN

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [reconciler_executable(), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    plan = run("plan", "-f", str(path), "-o", "json", "--verbose")
    assert plan.returncode == 2, plan.stderr
    assert _only(plan.stdout)["status"] == "changes"
    assert "DEBUG" in plan.stderr and "\x1b" not in plan.stdout  # no progress bar or colours on a pipe
    refused = run("apply", "-f", str(path))
    assert refused.returncode == 1 and "--yes" in refused.stderr
    applied = run("apply", "-f", str(path), "--yes", "--verbose")
    assert applied.returncode == 0, applied.stderr
    assert run("plan", "-f", str(path)).returncode == 0
    for process in (plan, refused, applied):
        assert SLACK_TOKEN not in process.stdout + process.stderr


# --- status, from a real sidecar ---


def _record(status: TaskStatus, *, name: str = "oncall", **fields: Any) -> TaskRecord:
    record = TaskRecord(
        status=status,
        reconcile=ReconcileRef(namespace=NS, name=name, generation=3),
        integration="slack-usergroups",
        actions=[ActionRecord(type="add_users", target="sre-oncall", detail="bob@example.com")],
        **fields,
    )
    if status.finished:
        record.started_at = record.finished_at = utcnow()
    return record


@pytest.fixture
def api_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_API_TOKEN", API_TOKEN)


@pytest.mark.usefixtures("api_token")
def test_status_of_a_successful_task(cli: CliRun, sidecar: Sidecar) -> None:
    record = _record(TaskStatus.SUCCESS, applied=1)
    sidecar.store.save(record)

    result = cli("status", record.task_id, "--api", sidecar.url, "-o", "json")

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["task_id"], shown["status"], shown["applied"]) == (record.task_id, "success", 1)
    assert shown["reconcile"] == {"namespace": NS, "name": "oncall", "generation": 3}
    table = cli("status", record.task_id, "--api", sidecar.url)
    assert table.exit_code == 0
    assert record.task_id in table.stdout and "success" in table.stdout and "add_users" in table.stdout


@pytest.mark.usefixtures("api_token")
def test_status_of_a_failed_task_exits_1(cli: CliRun, sidecar: Sidecar) -> None:
    record = _record(
        TaskStatus.FAILED, errors=[TaskError(reason="UnknownUsers", message="no Slack user x@y.z")]
    )
    sidecar.store.save(record)

    result = cli("status", record.task_id, "--api", sidecar.url)

    assert result.exit_code == 1, result.output
    assert "failed" in result.stdout and "UnknownUsers" in result.stdout


@pytest.mark.usefixtures("api_token")
def test_status_wait_on_a_pending_task_exits_3(cli: CliRun, sidecar: Sidecar) -> None:
    record = _record(TaskStatus.PENDING)
    sidecar.store.save(record)

    started = time.monotonic()
    result = cli("status", record.task_id, "--api", sidecar.url, "--wait", "1", "-o", "json")

    assert result.exit_code == 3, result.output
    assert time.monotonic() - started >= 1
    assert json.loads(result.stdout)["status"] == "pending"
    assert "still pending" in result.stderr
    assert cli("status", record.task_id, "--api", sidecar.url).exit_code == 3  # no wait: at once


@pytest.mark.usefixtures("api_token")
def test_status_wait_returns_when_the_task_finishes(cli: CliRun, sidecar: Sidecar) -> None:
    record = _record(TaskStatus.RUNNING)
    sidecar.store.save(record)

    def finish() -> None:
        time.sleep(0.5)
        record.status, record.finished_at = TaskStatus.SUCCESS, utcnow()
        sidecar.store.save(record)

    finisher = threading.Thread(target=finish)
    finisher.start()
    result = cli("status", record.task_id, "--api", sidecar.url, "--wait", "20", "-o", "json")
    finisher.join()

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "success"


@pytest.mark.usefixtures("api_token")
@pytest.mark.parametrize("kind", ["rec", "reconcile", "reconciles.reconciler.dev"])
def test_status_of_a_reconcile(cli: CliRun, sidecar: Sidecar, kind: str) -> None:
    name = f"by-{kind.replace('.', '-')}"
    older = _record(TaskStatus.FAILED, name=name)
    latest = _record(TaskStatus.SUCCESS, name=name)
    sidecar.store.save(older)
    sidecar.store.save(latest)

    result = cli("status", f"{kind}/{name}", "-n", NS, "--api", sidecar.url, "-o", "json")

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["namespace"], shown["name"]) == (NS, name)
    assert shown["latest"]["task_id"] == latest.task_id
    assert shown["recent"] == [latest.task_id, older.task_id]
    table = cli("status", f"{kind}/{name}", "--namespace", NS, "--api", sidecar.url)
    assert table.exit_code == 0 and latest.task_id in table.stdout and older.task_id in table.stdout


@pytest.mark.usefixtures("api_token")
def test_status_of_a_running_reconcile_with_wait_exits_3(cli: CliRun, sidecar: Sidecar) -> None:
    sidecar.store.save(_record(TaskStatus.RUNNING, name="busy"))

    result = cli("status", "rec/busy", "-n", NS, "--api", sidecar.url, "--wait", "1")

    assert result.exit_code == 3, result.output


@pytest.mark.usefixtures("api_token")
def test_status_of_unknown_things_exits_1(cli: CliRun, sidecar: Sidecar) -> None:
    unknown = cli("status", "0" * 32, "--api", sidecar.url)
    assert unknown.exit_code == 1 and "404" in unknown.stderr
    no_tasks = cli("status", "rec/never-ran", "-n", NS, "--api", sidecar.url)
    assert no_tasks.exit_code == 1 and "no task recorded" in no_tasks.stderr
    nonsense = cli("status", "not-a-task", "--api", sidecar.url)
    assert nonsense.exit_code == 1 and "neither a task id" in nonsense.stderr
    assert cli("status", "0" * 32, "--api", sidecar.url, "--wait", "301").exit_code == 1


def test_status_bearer_token_is_required_and_never_printed(
    cli: CliRun, sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = _record(TaskStatus.SUCCESS)
    sidecar.store.save(record)

    without = cli("status", record.task_id, "--api", sidecar.url)
    assert without.exit_code == 1 and "401" in without.stderr and "RECONCILER_API_TOKEN" in without.stderr

    monkeypatch.setenv("RECONCILER_API_TOKEN", "wrong-token-abcdef")
    wrong = cli("status", record.task_id, "--api", sidecar.url, "--verbose")
    assert wrong.exit_code == 1 and "401" in wrong.stderr
    assert "wrong-token-abcdef" not in wrong.output

    monkeypatch.setenv("RECONCILER_API_TOKEN", API_TOKEN)
    right = cli("status", record.task_id, "--api", sidecar.url, "--verbose")
    assert right.exit_code == 0, right.output
    assert "HTTP Request: GET" in right.stderr  # httpx's request log, through the redacting handler
    assert API_TOKEN not in right.output


def test_status_when_the_sidecar_is_unreachable_exits_1(cli: CliRun) -> None:
    result = cli("status", "0" * 32, "--api", f"http://127.0.0.1:{free_port()}")

    assert result.exit_code == 1 and "cannot reach the sidecar" in result.stderr


def test_console_script_status(sidecar: Sidecar) -> None:
    pending, done = _record(TaskStatus.PENDING), _record(TaskStatus.SUCCESS)
    sidecar.store.save(pending)
    sidecar.store.save(done)
    env = _plain_env()
    env.update({"RECONCILER_API_TOKEN": API_TOKEN, "RECONCILER_API_URL": sidecar.url})

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [reconciler_executable(), "status", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert run(done.task_id).returncode == 0
    waited = run(pending.task_id, "--wait", "1", "--verbose")
    assert waited.returncode == 3, waited.stderr
    assert API_TOKEN not in waited.stdout + waited.stderr


def test_progress_shows_on_a_terminal_only(write_manifests: WriteManifests) -> None:
    """On a terminal a progress bar runs while Slack is slow; on a pipe (above) the output stays plain."""
    import pty

    with SlackTestServer(latency=0.3) as slow:
        slow.add_token(SLACK_TOKEN)
        slow.add_user("alice@example.com")
        slow.add_user("bob@example.com")
        slow.add_channel("sre")
        path = write_manifests(slack_reconcile("oncall", slow.api_url, [ONCALL]))
        env = _plain_env()
        env.update({"RECONCILER_TOKEN": SLACK_TOKEN, "TERM": "xterm", "COLUMNS": "120"})
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            [reconciler_executable(), "plan", "-f", str(path)], env=env, stdout=follower, stderr=follower
        )
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            seen += chunk
        os.close(leader)
        assert process.wait(timeout=60) == 2
    text = seen.decode(errors="replace")
    assert "planning" in text and "(document 1)" in text  # the progress bar's description
    assert "create_usergroup" in text
    assert SLACK_TOKEN not in text


# --- claims ---


def test_plan_warns_when_a_reconcile_in_the_cluster_claims_the_target(
    cli: CliRun,
    slack: SlackTestServer,
    write_manifests: WriteManifests,
    valkey_server: ValkeyProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cluster's claims live in its Valkey: with RECONCILER_VALKEY_URL set, plan says who owns
    a target; the plan itself is unchanged and nothing is claimed."""
    handle = ONCALL["handle"]
    key = slack_usergroup_target(TEAM_ID, handle).key
    cache = ValkeyCache.from_url(valkey_server.url)
    owner = ClaimOwner(uid="0b7c-uid", namespace="team-other", name="oncall-owner")
    cache.set(claim_key(key), owner.to_json())
    monkeypatch.setenv("RECONCILER_VALKEY_URL", valkey_server.url)
    path = write_manifests(slack_reconcile("oncall", slack.api_url, [ONCALL]))
    try:
        result = cli("plan", "-f", str(path), "-o", "json")
        table = cli("plan", "-f", str(path))
    finally:
        cache.client.delete(claim_key(key))

    assert result.exit_code == 2, result.output
    assert _only(result.stdout)["status"] == "changes"
    assert f"@{handle} (workspace {TEAM_ID}) is claimed by Reconcile team-other/oncall-owner" in result.stderr
    assert "Conflict" in result.stderr
    assert "team-other/oncall-owner" in table.stdout
    assert cache.get(claim_key(key)) is None, "plan claims nothing"


def test_plan_without_a_reachable_valkey_does_not_warn(
    cli: CliRun, slack: SlackTestServer, write_manifests: WriteManifests, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_VALKEY_URL", f"valkey://127.0.0.1:{free_port()}/0")
    path = write_manifests(slack_reconcile("oncall", slack.api_url, [ONCALL]))
    result = cli("plan", "-f", str(path), "-o", "json")
    assert result.exit_code == 2, result.output
    assert _only(result.stdout)["status"] == "changes"
    assert "claimed" not in result.stderr
