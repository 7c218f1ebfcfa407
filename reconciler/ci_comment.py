"""Plans in merge requests: `reconciler plan` on the Reconcile manifests a merge request changes, as
ONE Markdown comment that each pipeline run updates (found again by a hidden marker).

Called by the GitLab CI template (deploy/ci/gitlab-plan.yml) and the GitHub Actions composite
action (deploy/ci/github/action.yml): `python -m reconciler.ci_comment gitlab|github`. Exit status
1 only when a plan has errors (or the comment cannot be posted); planned changes are what a merge
request is for, so they pass.

Tokens: the plan's come from the CI secret store as RECONCILER_TOKEN_SLACK_USERGROUPS /
RECONCILER_TOKEN_GITLAB_MEMBERS (or RECONCILER_TOKEN for all); read-only scopes suffice. The
comment's: GitLab RECONCILER_COMMENT_TOKEN (a project access token, `api` scope, Reporter), GitHub
GITHUB_TOKEN (`pull-requests: write`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx

MARKER = "<!-- reconciler-plan -->"
"""Hidden in every comment this posts: how the next run finds the comment to update."""
MAX_PAGES = 50
PER_PAGE = 100
MAX_BODY = 60_000
"""GitHub refuses comments over 65,536 characters; GitLab notes allow a million."""
RECONCILE_KIND = re.compile(r"^kind:\s*['\"]?Reconcile['\"]?\s*$", re.M)
INTEGRATION = re.compile(r"^\s*integration:\s*['\"]?([a-z0-9-]+)", re.M)
EXIT_OK, EXIT_FAILED, EXIT_CHANGES = 0, 1, 2


class CommentError(Exception):
    """The comment API refused or failed: the message says which call and what it answered."""


# --- which manifests, and their plans ------------------------------------------------------------


def changed_manifests(base: str, repo: Path) -> list[str]:
    """YAML files the merge request adds or changes (against the merge base with `base`) that hold
    a Reconcile; a file that does not parse still counts, so that plan reports it."""
    diff = subprocess.run(
        ["git", "diff", "--name-only", "--diff-filter=ACMR", f"{base}...HEAD", "--", "*.yaml", "*.yml"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if diff.returncode != 0:
        raise CommentError(f"git diff against {base} failed: {diff.stderr.strip()[:300]}")
    found = []
    for name in diff.stdout.splitlines():
        path = repo / name
        if path.is_file() and RECONCILE_KIND.search(path.read_text(encoding="utf-8", errors="replace")):
            found.append(name)
    return found


@dataclass(frozen=True)
class Plan:
    markdown: str
    exit_code: int


def plan(files: Sequence[str], repo: Path) -> Plan:
    """`reconciler plan -o markdown`, one run per integration, each with its own token variable."""
    by_integration: dict[str, list[str]] = {}
    for name in files:
        match = INTEGRATION.search((repo / name).read_text(encoding="utf-8", errors="replace"))
        by_integration.setdefault(match.group(1) if match else "unknown", []).append(name)
    parts, codes = [], []
    for integration, names in sorted(by_integration.items()):
        variable = f"RECONCILER_TOKEN_{integration.upper().replace('-', '_')}"
        token_env = variable if os.environ.get(variable) else "RECONCILER_TOKEN"
        args = [sys.executable, "-m", "reconciler", "plan", "-o", "markdown", "--token-env", token_env]
        for name in names:
            args += ["-f", name]
        done = subprocess.run(args, cwd=repo, capture_output=True, text=True, check=False, timeout=600)
        codes.append(done.returncode)
        if done.returncode in (EXIT_OK, EXIT_CHANGES) or done.stdout.strip():
            parts.append(done.stdout.strip())
        if done.returncode not in (EXIT_OK, EXIT_CHANGES):
            parts.append(f"```\n{done.stderr.strip()[-2000:]}\n```")
    code = (
        EXIT_FAILED
        if any(c not in (EXIT_OK, EXIT_CHANGES) for c in codes)
        else (EXIT_CHANGES if EXIT_CHANGES in codes else EXIT_OK)
    )
    return Plan("\n\n".join(parts), code)


def comment_body(result: Plan | None, files: Sequence[str], revision: str) -> str:
    if result is None:
        text = "No Reconcile manifests changed in this merge request any more."
    else:
        verdict = {EXIT_OK: "no changes", EXIT_CHANGES: "changes planned", EXIT_FAILED: "**errors**"}
        listed = ", ".join(f"`{name}`" for name in files)
        text = f"Plan of {listed}: {verdict[result.exit_code]}.\n\n{result.markdown}"
    footer = f"\n\n<sub>reconciler plan at {revision[:12] or 'this revision'}</sub>"
    if len(text) + len(footer) > MAX_BODY:
        text = text[: MAX_BODY - len(footer) - 100] + "\n\n… (cut: see the job log for the whole plan)"
    return f"{MARKER}\n{text}{footer}\n"


# --- the comment APIs ----------------------------------------------------------------------------


class CommentApi(Protocol):
    def comments(self) -> Iterator[tuple[str, str]]:
        """(id, body) of every comment, oldest first."""

    def create(self, body: str) -> None: ...

    def update(self, comment_id: str, body: str) -> None: ...


class _Http:
    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/") + "/", headers=headers, timeout=30)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CommentError(f"{method} {path} failed: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise CommentError(f"{method} {path} answered HTTP {response.status_code}: {response.text[:300]}")
        return response

    def pages(self, path: str) -> Iterator[dict[str, Any]]:
        for page in range(1, MAX_PAGES + 1):
            items = self.call("GET", path, params={"per_page": PER_PAGE, "page": page}).json()
            if not isinstance(items, list):
                raise CommentError(f"GET {path} answered something that is not a list")
            yield from (item for item in items if isinstance(item, dict))
            if len(items) < PER_PAGE:
                return


class GitlabNotes(_Http):
    """Merge request notes: GET/POST /projects/:id/merge_requests/:iid/notes, PUT .../notes/:note_id."""

    def __init__(self, api_url: str, token: str, project: str, mr_iid: str) -> None:
        super().__init__(api_url, {"PRIVATE-TOKEN": token})
        self.path = f"projects/{quote(project, safe='')}/merge_requests/{quote(mr_iid)}/notes"

    def comments(self) -> Iterator[tuple[str, str]]:
        for note in self.pages(self.path):
            yield str(note.get("id")), str(note.get("body") or "")

    def create(self, body: str) -> None:
        self.call("POST", self.path, json={"body": body})

    def update(self, comment_id: str, body: str) -> None:
        self.call("PUT", f"{self.path}/{quote(comment_id)}", json={"body": body})


class GithubComments(_Http):
    """Pull request conversation comments (the issues API): GET/POST
    /repos/:owner/:repo/issues/:number/comments, PATCH /repos/:owner/:repo/issues/comments/:id."""

    def __init__(self, api_url: str, token: str, repository: str, number: str) -> None:
        super().__init__(
            api_url,
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
        )
        self.repo = f"repos/{repository}"
        self.number = number

    def comments(self) -> Iterator[tuple[str, str]]:
        for comment in self.pages(f"{self.repo}/issues/{quote(self.number)}/comments"):
            yield str(comment.get("id")), str(comment.get("body") or "")

    def create(self, body: str) -> None:
        self.call("POST", f"{self.repo}/issues/{quote(self.number)}/comments", json={"body": body})

    def update(self, comment_id: str, body: str) -> None:
        self.call("PATCH", f"{self.repo}/issues/comments/{quote(comment_id)}", json={"body": body})


def post(api: CommentApi, body: str, *, only_update: bool = False) -> str:
    """Update the comment with the marker, or create one (unless `only_update`)."""
    previous = next((cid for cid, text in api.comments() if MARKER in text), None)
    if previous is not None:
        api.update(previous, body)
        return f"updated comment {previous}"
    if only_update:
        return "no comment to update"
    api.create(body)
    return "created a comment"


# --- the command ---------------------------------------------------------------------------------


def _env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise CommentError(f"environment variable {name} is not set")
    return value


def comment_api(provider: str) -> tuple[CommentApi, str, str]:
    """The comment API, the target branch and the revision, from the CI's own variables."""
    if provider == "gitlab":
        api: CommentApi = GitlabNotes(
            _env("CI_API_V4_URL"),
            _env("RECONCILER_COMMENT_TOKEN"),
            _env("CI_PROJECT_ID"),
            _env("CI_MERGE_REQUEST_IID"),
        )
        base = f"origin/{_env('CI_MERGE_REQUEST_TARGET_BRANCH_NAME')}"
        return api, base, os.environ.get("CI_COMMIT_SHA", "")
    event = json.loads(Path(_env("GITHUB_EVENT_PATH")).read_text(encoding="utf-8"))
    number = str((event.get("pull_request") or {}).get("number") or event.get("number") or "")
    if not number:
        raise CommentError("not a pull_request event: there is no pull request to comment on")
    api = GithubComments(
        os.environ.get("GITHUB_API_URL", "https://api.github.com"),
        _env("GITHUB_TOKEN"),
        _env("GITHUB_REPOSITORY"),
        number,
    )
    return api, f"origin/{_env('GITHUB_BASE_REF')}", os.environ.get("GITHUB_SHA", "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reconciler.ci_comment", description=__doc__)
    parser.add_argument("provider", choices=["gitlab", "github"])
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="the checkout (default: here)")
    args = parser.parse_args(argv)
    try:
        api, base, revision = comment_api(args.provider)
        files = changed_manifests(base, args.repo)
        if not files:
            outcome = post(api, comment_body(None, files, revision), only_update=True)
            print(f"no Reconcile manifests changed against {base}; {outcome}")
            return EXIT_OK
        result = plan(files, args.repo)
        print(result.markdown)
        print(post(api, comment_body(result, files, revision)), file=sys.stderr)
    except CommentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_FAILED if result.exit_code == EXIT_FAILED else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
