"""Static checks of the Dockerfile (Docker cannot run here): stages, user, entrypoint, no build tools."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest

from tests.deploy.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|cc|clang|make|build-essential|python3?-dev|libc6?-dev)\b")


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, args = current.partition(" ")
        result.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "dangling line continuation"
    return result


def stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    build_args: dict[str, str] = {}
    found: list[Stage] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--platform")]
            image = re.sub(r"\$\{(\w+)\}", lambda m: build_args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(image, name))
        elif not found:
            if keyword == "ARG" and "=" in args:
                key, _, value = args.partition("=")
                build_args[key.strip()] = value.strip()
        else:
            found[-1].instructions.append((keyword, args))
    return build_args, found


@pytest.fixture(scope="module")
def parsed() -> list[Stage]:
    return stages(DOCKERFILE.read_text())[1]


def test_multi_stage_build_of_a_wheel(parsed: list[Stage]) -> None:
    assert len(parsed) >= 2
    builder, final = parsed[0], parsed[-1]
    assert builder.name == "builder"
    assert any(re.search(r"\bpip (wheel|download)\b|\bpython -m build\b", run) for run in builder.all("RUN"))
    assert final.image == "python:3.11-slim"
    assert final.name is None
    # The final stage takes the wheels from the builder, never the sources.
    runs = " ".join(final.all("RUN"))
    copies = final.all("COPY")
    assert "from=builder" in runs or any("--from=builder" in c for c in copies)
    assert re.search(r"pip install [^&]*--no-index", runs)
    assert not [c for c in copies if "--from" not in c], (
        f"final stage copies from the build context: {copies}"
    )


def test_final_stage_has_no_build_tools(parsed: list[Stage]) -> None:
    final = parsed[-1]
    for run in final.all("RUN"):
        assert not BUILD_TOOLS.search(run), f"build tools in the final stage: {run}"


def test_runs_as_a_numeric_non_root_user(parsed: list[Stage]) -> None:
    final = parsed[-1]
    users = final.all("USER")
    assert users, "no USER in the final stage"
    user = users[-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) == 10001
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # USER comes after every RUN: nothing runs as root after the switch... and nothing after needs root.
    keywords = [kw for kw, _ in final.instructions]
    assert keywords.index("USER") > max(i for i, kw in enumerate(keywords) if kw == "RUN")
    assert "--uid 10001" in " ".join(final.all("RUN"))


def test_entrypoint_cmd_and_port(parsed: list[Stage]) -> None:
    final = parsed[-1]
    assert json.loads(final.all("ENTRYPOINT")[-1]) == ["reconciler"]
    assert json.loads(final.all("CMD")[-1]) == ["run", "-A"]
    assert "8080" in final.all("EXPOSE")[-1].split()


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "allow-list: ignore everything, then re-include the sources"
    included = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert {"pyproject.toml", "reconciler", "operator", "api"} <= included
    assert not included & {".venv", ".git", "tests", ".tools"}
