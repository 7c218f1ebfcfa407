"""`make demo`: try the command line without a cluster or a real token.

It starts the project's local Slack Web API and GitLab servers with seed data, and the status sidecar on
a private embedded Valkey, then runs `plan` -> `apply` -> `plan` (no changes) -> `status`, printing each
command before running it and checking its exit code. Everything it started is stopped at the end, also
on Ctrl-C or a failed step. Exit status: 0 when every step ended as expected, 1 otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from reconciler_testing.gitlab import DEVELOPER, OWNER, GitLabTestServer
from reconciler_testing.slack import SlackTestServer

NAMESPACE = "demo"
SLACK_TOKEN = "demo-slack-token"
GITLAB_TOKEN = "demo-gitlab-token"
READY_TIMEOUT_SECONDS = 30.0
STEP_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Step:
    args: tuple[str, ...]
    expected: int
    meaning: str


def seed_slack(server: SlackTestServer) -> None:
    """A workspace with four people, two channels, and an outdated `platform-oncall` group."""
    server.load_seed(
        {
            "tokens": [SLACK_TOKEN],
            "users": ["alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"],
            "channels": ["platform", "incidents"],
            "usergroups": [
                {
                    "handle": "platform-oncall",
                    "name": "Platform On-call",
                    "description": "Paged for production incidents",
                    "users": ["alice@example.com", "dave@example.com"],
                    "channels": ["platform"],
                }
            ],
        }
    )


def seed_gitlab(server: GitLabTestServer) -> None:
    """A group `acme/platform` whose bot owns it, with one member who should no longer be there."""
    server.load_seed(
        {
            "users": ["demo-bot", "alice", "bob", "mallory"],
            "tokens": [{"token": GITLAB_TOKEN, "username": "demo-bot", "scopes": ["api"]}],
            "groups": ["acme", "acme/platform"],
            "members": [
                {"kind": "group", "path": "acme/platform", "username": "demo-bot", "access_level": OWNER},
                {"kind": "group", "path": "acme/platform", "username": "mallory", "access_level": DEVELOPER},
            ],
        }
    )


def reconciles_yaml(slack_api_url: str, gitlab_url: str) -> str:
    return f"""\
apiVersion: reconciler.dev/v1alpha1
kind: Reconcile
metadata: {{name: platform-slack, namespace: {NAMESPACE}}}
spec:
  integration: slack-usergroups
  credentials: {{secretRef: {{name: slack-bot, key: token}}}}
  slackUsergroups:
    apiUrl: {slack_api_url}
    usergroups:
      - handle: platform-oncall                       # name, description: left as they are
        users: [alice@example.com, bob@example.com]   # dave leaves, bob joins
        channels: [platform, incidents]
      - handle: platform-leads                        # does not exist yet
        name: Platform Leads
        users: [carol@example.com]
---
apiVersion: reconciler.dev/v1alpha1
kind: Reconcile
metadata: {{name: platform-gitlab, namespace: {NAMESPACE}}}
spec:
  integration: gitlab-members
  credentials: {{secretRef: {{name: gitlab-bot, key: token}}}}
  gitlabMembers:
    url: {gitlab_url}
    groups:
      - path: acme/platform
        members:
          - {{username: alice, accessLevel: maintainer}}
          - {{username: bob, accessLevel: developer}}   # mallory is not listed: removed
"""


SECRETS_YAML = f"""\
# Tokens of the local test servers; a real setup keeps real ones out of files (--token-env, CI secrets).
apiVersion: v1
kind: Secret
metadata: {{name: slack-bot, namespace: {NAMESPACE}}}
stringData: {{token: {SLACK_TOKEN}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: gitlab-bot, namespace: {NAMESPACE}}}
stringData: {{token: {GITLAB_TOKEN}}}
"""


def steps(api_url: str) -> list[Step]:
    files = ("-f", "reconciles.yaml", "--secret-file", "secrets.yaml")
    return [
        Step(("plan", *files), 2, "changes are planned, nothing was written"),
        Step(("apply", *files, "--yes", "--record"), 0, "applied, and recorded as tasks"),
        Step(("plan", *files), 0, "nothing left to change"),
        Step(("status", "rec/platform-slack", "-n", NAMESPACE, "--api", api_url), 0, "the task succeeded"),
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(runtime_dir: Path) -> dict[str, str]:
    """This environment without RECONCILER_* (no outside Valkey or token leaks in), plus a private
    runtime dir, so the embedded Valkey is the demo's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["RECONCILER_RUNTIME_DIR"] = str(runtime_dir)
    env["RECONCILER_LOG_LEVEL"] = "WARNING"
    return env


def wait_ready(url: str, sidecar: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if sidecar.poll() is not None:
            raise RuntimeError(f"the sidecar exited with status {sidecar.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:  # noqa: S310 - loopback
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the sidecar at {url} was not ready within {READY_TIMEOUT_SECONDS:.0f}s")


def stop_sidecar(sidecar: subprocess.Popen[bytes]) -> None:
    if sidecar.poll() is None:
        sidecar.terminate()
        try:
            sidecar.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sidecar.kill()
            sidecar.wait(timeout=5)


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def run_steps(workdir: Path, env: dict[str, str], api_url: str, reconciler: str) -> bool:
    todo = steps(api_url)
    for number, step in enumerate(todo, start=1):
        print(f"\n$ reconciler {' '.join(step.args)}", flush=True)
        done = subprocess.run([reconciler, *step.args], cwd=workdir, env=env, timeout=STEP_TIMEOUT_SECONDS)
        verdict = "as expected" if done.returncode == step.expected else "UNEXPECTED"
        say(
            f"step {number}/{len(todo)}: exit {done.returncode} (expected {step.expected}: {step.meaning}) "
            f"{verdict}"
        )
        if done.returncode != step.expected:
            return False
    return True


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    reconciler = shutil.which("reconciler", path=str(Path(sys.executable).parent)) or "reconciler"
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reconciler-demo-")))
        runtime_dir = workdir / "runtime"
        env = child_env(runtime_dir)
        try:
            slack = stack.enter_context(SlackTestServer())
            gitlab = stack.enter_context(GitLabTestServer())
            seed_slack(slack)
            seed_gitlab(gitlab)
            say(f"local Slack Web API at {slack.api_url}, local GitLab at {gitlab.url} (seeded)")
            (workdir / "reconciles.yaml").write_text(reconciles_yaml(slack.api_url, gitlab.url))
            (workdir / "secrets.yaml").write_text(SECRETS_YAML)

            port = free_port()
            api_url = f"http://127.0.0.1:{port}"
            sidecar = subprocess.Popen([reconciler, "api", "--port", str(port)], env=env)
            stack.callback(_stop_embedded_valkey, runtime_dir)
            stack.callback(stop_sidecar, sidecar)
            wait_ready(api_url, sidecar)
            say(f"status sidecar at {api_url} on an embedded Valkey under {runtime_dir}")
            say(f"working in {workdir}; reconciles.yaml is:\n")
            print((workdir / "reconciles.yaml").read_text(), flush=True)
            ok = run_steps(workdir, env, api_url, reconciler)
        except KeyboardInterrupt:
            say("interrupted; stopping what the demo started")
            return 130
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            say(f"failed: {exc}")
            return 1
        finally:
            say("stopping the sidecar, the embedded Valkey and the local servers")
    say("done: every step ended as expected" if ok else "a step did not end as expected")
    return 0 if ok else 1


def _stop_embedded_valkey(runtime_dir: Path) -> None:
    from reconciler.cache.embedded import stop_embedded_valkey

    stop_embedded_valkey(runtime_dir)


if __name__ == "__main__":
    sys.exit(main())
