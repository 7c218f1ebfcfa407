"""Plans in merge requests: the script the GitLab CI template and the GitHub action call, against a
git repository on disk, the Slack test server, and a local server standing in for GitLab's notes API
and GitHub's issue-comments API (as their documentation describes them)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import ci_comment
from reconciler_testing.slack import DEFAULT_SCOPES, SlackTestServer
from tests import builders

REPO_ROOT = Path(__file__).resolve().parents[2]
READ_SCOPES = {"usergroups:read", "users:read", "users:read.email", "channels:read"}
PLAN_TOKEN = "xoxb-ci-read-only-token-1122334455"
COMMENT_TOKEN = "comment-token-99887766"


@dataclass
class CommentServer:
    """GitLab: /api/v4/projects/:id/merge_requests/:iid/notes (GET, POST), .../notes/:id (PUT), with
    PRIVATE-TOKEN. GitHub: /repos/:o/:r/issues/:n/comments (GET, POST), /repos/:o/:r/issues/comments/:id
    (PATCH), with a Bearer token. Both paginate with per_page/page."""

    comments: dict[int, str] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""

    def handle(self, method: str, path: str, headers: Any, body: dict[str, Any]) -> tuple[int, Any]:
        self.calls.append((method, path.split("?")[0]))
        gitlab = path.startswith("/api/v4/")
        auth = (
            headers.get("PRIVATE-TOKEN")
            if gitlab
            else headers.get("Authorization", "").removeprefix("Bearer ")
        )
        if auth != COMMENT_TOKEN:
            return 401, {"message": "401 Unauthorized"}
        route = path.split("?")[0]
        if method == "GET" and route.endswith(("/notes", "/comments")):
            query = dict(part.split("=") for part in path.split("?")[1].split("&"))
            page, per_page = int(query["page"]), int(query["per_page"])
            items = [{"id": cid, "body": text} for cid, text in sorted(self.comments.items())]
            return 200, items[(page - 1) * per_page : page * per_page]
        if method == "POST" and route.endswith(("/notes", "/comments")):
            cid = len(self.comments) + 1
            self.comments[cid] = body["body"]
            return 201, {"id": cid, "body": body["body"]}
        if method in ("PUT", "PATCH"):
            cid = int(route.rsplit("/", 1)[1])
            if cid not in self.comments:
                return 404, {"message": "404 Not found"}
            self.comments[cid] = body["body"]
            return 200, {"id": cid, "body": body["body"]}
        return 404, {"message": "404 Not Found"}


@pytest.fixture
def comments() -> Iterator[CommentServer]:
    state = CommentServer()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else {}
            status, answer = state.handle(self.command, self.path, self.headers, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128  # socketserver's backlog of 5 overflows on a loaded machine (ReadError)

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def slack() -> Iterator[SlackTestServer]:
    with SlackTestServer() as server:
        server.add_token(PLAN_TOKEN, READ_SCOPES)
        server.add_token("xoxb-writer", DEFAULT_SCOPES)
        server.add_user("alice@example.com")
        yield server


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """main with one unrelated file; the merge request's branch is checked out on top of it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "ci@example.com")
    git(repo, "config", "user.name", "CI")
    (repo / "README.md").write_text("gitops\n")
    (repo / "app.yaml").write_text("kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    git(repo, "update-ref", "refs/remotes/origin/main", "main")
    git(repo, "checkout", "-qb", "feature")
    return repo


def commit(repo: Path, files: dict[str, Any]) -> None:
    for name, doc in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "change")


def gitlab_env(monkeypatch: pytest.MonkeyPatch, comments: CommentServer) -> None:
    for name, value in {
        "CI_API_V4_URL": f"{comments.url}/api/v4",
        "CI_PROJECT_ID": "acme/gitops",
        "CI_MERGE_REQUEST_IID": "7",
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_COMMIT_SHA": "0123456789abcdef0123",
        "RECONCILER_COMMENT_TOKEN": COMMENT_TOKEN,
        "RECONCILER_TOKEN_SLACK_USERGROUPS": PLAN_TOKEN,
    }.items():
        monkeypatch.setenv(name, value)


def group(handle: str, users: list[str]) -> list[dict[str, Any]]:
    return [{"handle": handle, "name": f"Group {handle}", "users": users}]


def test_gitlab_one_comment_created_then_updated_and_errors_fail(
    repo: Path, slack: SlackTestServer, comments: CommentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    gitlab_env(monkeypatch, comments)
    commit(
        repo, {"teams/sre.yaml": builders.slack_reconcile("sre", "team-sre", slack.api_url, group("sre", []))}
    )

    assert ci_comment.main(["gitlab", "--repo", str(repo)]) == 0  # changes planned: passes
    assert list(comments.comments) == [1]
    body = comments.comments[1]
    assert body.startswith(ci_comment.MARKER)
    assert "Plan of `teams/sre.yaml`: changes planned." in body
    assert "`create_usergroup`" in body and "`sre`" in body
    assert "0123456789ab" in body
    assert ("POST", "/api/v4/projects/acme%2Fgitops/merge_requests/7/notes") in comments.calls
    assert slack.write_calls() == []  # a plan never writes
    assert PLAN_TOKEN not in body

    # A second push: an unknown user is an error; the same comment is updated, the job fails.
    commit(
        repo,
        {
            "teams/sre.yaml": builders.slack_reconcile(
                "sre", "team-sre", slack.api_url, group("sre", ["nobody@example.com"])
            )
        },
    )
    comments.calls.clear()
    assert ci_comment.main(["gitlab", "--repo", str(repo)]) == 1
    assert list(comments.comments) == [1]
    assert ("PUT", "/api/v4/projects/acme%2Fgitops/merge_requests/7/notes/1") in comments.calls
    assert "**errors**" in comments.comments[1] and "UnknownUsers" in comments.comments[1]


def test_only_changed_reconcile_manifests_are_planned(
    repo: Path, slack: SlackTestServer, comments: CommentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    gitlab_env(monkeypatch, comments)
    comments.comments[1] = "LGTM"  # someone else's comment is left alone
    commit(
        repo,
        {
            "app.yaml": "kind: ConfigMap\napiVersion: v1\nmetadata: {name: y}\n",
            "teams/a.yaml": builders.slack_reconcile(
                "a", "t", slack.api_url, group("a", ["alice@example.com"])
            ),
            "docs/notes.md": "not yaml\n",
        },
    )
    assert ci_comment.changed_manifests("origin/main", repo) == ["teams/a.yaml"]
    assert ci_comment.main(["gitlab", "--repo", str(repo)]) == 0
    assert comments.comments[1] == "LGTM"
    assert "Plan of `teams/a.yaml`" in comments.comments[2]


def test_nothing_changed_posts_nothing(
    repo: Path, comments: CommentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    gitlab_env(monkeypatch, comments)
    commit(repo, {"app.yaml": "kind: ConfigMap\napiVersion: v1\nmetadata: {name: z}\n"})
    assert ci_comment.main(["gitlab", "--repo", str(repo)]) == 0
    assert comments.comments == {}
    assert [method for method, _ in comments.calls] == ["GET"]


def test_github_pull_request_comment(
    repo: Path,
    slack: SlackTestServer,
    comments: CommentServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 12}}))
    for name, value in {
        "GITHUB_API_URL": comments.url,
        "GITHUB_REPOSITORY": "acme/gitops",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_BASE_REF": "main",
        "GITHUB_SHA": "fedcba9876543210",
        "GITHUB_TOKEN": COMMENT_TOKEN,
        "RECONCILER_TOKEN_SLACK_USERGROUPS": "",  # the action passes "" for inputs not given
        "RECONCILER_TOKEN": PLAN_TOKEN,
    }.items():
        monkeypatch.setenv(name, value)
    commit(
        repo,
        {"rec.yml": builders.slack_reconcile("b", "t", slack.api_url, group("b", ["alice@example.com"]))},
    )

    assert ci_comment.main(["github", "--repo", str(repo)]) == 0
    assert ci_comment.main(["github", "--repo", str(repo)]) == 0
    assert list(comments.comments) == [1]
    assert comments.calls.count(("POST", "/repos/acme/gitops/issues/12/comments")) == 1
    assert ("PATCH", "/repos/acme/gitops/issues/comments/1") in comments.calls
    assert "Plan of `rec.yml`: changes planned." in comments.comments[1]


def test_a_refused_comment_fails_with_the_answer(
    repo: Path,
    slack: SlackTestServer,
    comments: CommentServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gitlab_env(monkeypatch, comments)
    monkeypatch.setenv("RECONCILER_COMMENT_TOKEN", "wrong")
    commit(repo, {"r.yaml": builders.slack_reconcile("r", "t", slack.api_url, group("r", []))})
    assert ci_comment.main(["gitlab", "--repo", str(repo)]) == 1
    assert "answered HTTP 401" in capsys.readouterr().err


def test_templates_call_the_script() -> None:
    gitlab = yaml.safe_load((REPO_ROOT / "deploy/ci/gitlab-plan.yml").read_text())
    job = gitlab[".reconciler-plan"]
    assert job["script"] == ["python -m reconciler.ci_comment gitlab"]
    assert job["variables"]["GIT_DEPTH"] == "0"
    assert gitlab["reconciler-plan"]["extends"] == ".reconciler-plan"
    action = yaml.safe_load((REPO_ROOT / "deploy/ci/github/action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    assert steps[-1]["run"] == "python -m reconciler.ci_comment github"
    # Inputs reach the scripts through env, never pasted into a shell line.
    assert all("${{" not in step.get("run", "") for step in steps)
    assert set(steps[-1]["env"]) == {
        "GITHUB_TOKEN",
        "RECONCILER_TOKEN",
        "RECONCILER_TOKEN_SLACK_USERGROUPS",
        "RECONCILER_TOKEN_GITLAB_MEMBERS",
    }
