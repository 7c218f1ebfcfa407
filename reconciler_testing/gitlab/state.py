"""The GitLab fake's data: users, tokens, groups, projects, memberships, and the hierarchy rules.

Why apart from the HTTP side: tests seed and inspect this state directly, and the membership rules
(inheritance, last owner) are GitLab behaviour that the routes only call.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler_testing.gitlab.api import not_found

MINIMAL_ACCESS = 5
GUEST = 10
PLANNER = 15
REPORTER = 20
DEVELOPER = 30
MAINTAINER = 40
OWNER = 50

# Gitlab::Access human names, used in the "inherited membership" validation message.
ACCESS_NAMES: dict[int, str] = {
    MINIMAL_ACCESS: "Minimal Access",
    GUEST: "Guest",
    PLANNER: "Planner",
    REPORTER: "Reporter",
    DEVELOPER: "Developer",
    MAINTAINER: "Maintainer",
    OWNER: "Owner",
}
# Minimal access is only valid on groups (EE); owner is valid on both since GitLab 14.9.
VALID_LEVELS: dict[str, frozenset[int]] = {
    "group": frozenset(ACCESS_NAMES),
    "project": frozenset(ACCESS_NAMES) - {MINIMAL_ACCESS},
}

SourceKey = tuple[str, int]
"""("group" or "project", id): where a membership is held."""


@dataclass
class User:
    id: int
    username: str
    name: str
    state: str


@dataclass
class Token:
    user_id: int
    scopes: frozenset[str]
    id: int = 0


@dataclass
class Group:
    id: int
    full_path: str
    name: str
    parent_id: int | None

    @property
    def path(self) -> str:
        return self.full_path.rsplit("/", 1)[-1]


@dataclass
class Project:
    id: int
    path_with_namespace: str
    name: str
    namespace_id: int

    @property
    def path(self) -> str:
        return self.path_with_namespace.rsplit("/", 1)[-1]


@dataclass
class Membership:
    access_level: int
    expires_at: str | None
    created_at: str
    seq: int


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


class GitLabState:
    """In-memory GitLab data. Every access holds `_lock`: the HTTP server answers on many threads."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._users: dict[int, User] = {}
        self._tokens: dict[str, Token] = {}
        self._groups: dict[int, Group] = {}
        self._projects: dict[int, Project] = {}
        self._members: dict[SourceKey, dict[int, Membership]] = {}
        self._next_user_id = 1
        self._next_source_id = 100
        self._seq = 0

    # ------------------------------------------------------------------ state helpers

    def add_user(self, username: str, *, name: str | None = None, state: str = "active") -> int:
        """Create a user ("active" or "blocked") and return its id."""
        with self._lock:
            if self._find_user_by_username(username) is not None:
                raise ValueError(f"user {username!r} already exists")
            user = User(self._next_user_id, username, name or username.replace("_", " ").title(), state)
            self._next_user_id += 1
            self._users[user.id] = user
            return user.id

    def set_user_state(self, username: str, state: str) -> None:
        """Block or unblock a user after creation (GitLab admins do this out of band)."""
        with self._lock:
            self._require_user(username).state = state

    def add_token(self, token: str, *, username: str, scopes: Sequence[str] = ("api",)) -> None:
        """Register a personal access token acting as ``username``; ``read_api`` allows GETs only."""
        with self._lock:
            self._tokens[token] = Token(
                self._require_user(username).id, frozenset(scopes), id=len(self._tokens) + 1
            )

    def add_group(self, full_path: str, *, parent: str | None = None, name: str | None = None) -> int:
        """Create a group and return its id.

        ``full_path`` is the whole path ("acme/platform"); the parent is taken from it. Missing
        ancestors are created too, so the hierarchy always matches the path as in GitLab. ``parent``
        may name the parent explicitly, in which case ``full_path`` may also be just the last segment.
        """
        full_path = full_path.strip("/")
        if parent is not None and not full_path.lower().startswith(parent.strip("/").lower() + "/"):
            full_path = f"{parent.strip('/')}/{full_path}"
        with self._lock:
            if self._find_group(full_path) is not None:
                raise ValueError(f"group {full_path!r} already exists")
            parent_id: int | None = None
            if "/" in full_path:
                parent_path = full_path.rsplit("/", 1)[0]
                found = self._find_group(parent_path)
                if found is None:
                    if parent is not None:
                        raise ValueError(f"parent group {parent!r} does not exist")
                    parent_id = self.add_group(parent_path)
                else:
                    parent_id = found.id
            group = Group(self._new_source_id(), full_path, name or full_path.rsplit("/", 1)[-1], parent_id)
            self._groups[group.id] = group
            self._members[("group", group.id)] = {}
            return group.id

    def add_project(self, path_with_namespace: str, *, name: str | None = None) -> int:
        """Create a project in an existing group namespace and return its id."""
        path_with_namespace = path_with_namespace.strip("/")
        if "/" not in path_with_namespace:
            raise ValueError("project path must include its group namespace")
        namespace_path, path = path_with_namespace.rsplit("/", 1)
        with self._lock:
            namespace = self._find_group(namespace_path)
            if namespace is None:
                raise ValueError(f"namespace group {namespace_path!r} does not exist")
            if self._find_project(path_with_namespace) is not None:
                raise ValueError(f"project {path_with_namespace!r} already exists")
            project = Project(self._new_source_id(), path_with_namespace, name or path, namespace.id)
            self._projects[project.id] = project
            self._members[("project", project.id)] = {}
            return project.id

    def add_member(
        self, kind: str, path: str, username: str, access_level: int, expires_at: str | None = None
    ) -> None:
        """Set a direct membership, bypassing API validation (seed data may be as messy as real data)."""
        with self._lock:
            source_key = self._require_source(kind, path)
            user = self._require_user(username)
            self._members[source_key][user.id] = Membership(
                access_level, expires_at, now_iso(), self._next_seq()
            )

    def remove_member(self, kind: str, path: str, username: str) -> None:
        """Drop a direct membership behind the operator's back (drift)."""
        with self._lock:
            source_key = self._require_source(kind, path)
            self._members[source_key].pop(self._require_user(username).id, None)

    def members(self, kind: str, path: str) -> dict[str, dict[str, Any]]:
        """Direct members of a group or project: username -> {access_level, expires_at}."""
        with self._lock:
            source_key = self._require_source(kind, path)
            return {
                self._users[user_id].username: {"access_level": m.access_level, "expires_at": m.expires_at}
                for user_id, m in self._members[source_key].items()
            }

    def user_id(self, username: str) -> int:
        """Id to put in API calls and assertions; ids are assigned by the server as in GitLab."""
        with self._lock:
            return self._require_user(username).id

    def group_id(self, full_path: str) -> int:
        """Numeric id of a group, for building expected request paths."""
        with self._lock:
            group = self._find_group(full_path)
            if group is None:
                raise KeyError(full_path)
            return group.id

    def project_id(self, path_with_namespace: str) -> int:
        """Numeric id of a project, for building expected request paths."""
        with self._lock:
            project = self._find_project(path_with_namespace)
            if project is None:
                raise KeyError(path_with_namespace)
            return project.id

    def load_seed(self, data: Mapping[str, Any]) -> None:
        """Load users, tokens, groups, projects and members from a seed mapping (see the package doc)."""
        with self._lock:
            for user in data.get("users", []):
                if isinstance(user, str):
                    self.add_user(user)
                else:
                    self.add_user(user["username"], name=user.get("name"), state=user.get("state", "active"))
            for token in data.get("tokens", []):
                self.add_token(
                    token["token"], username=token["username"], scopes=token.get("scopes", ("api",))
                )
            for group in data.get("groups", []):
                group_path = group if isinstance(group, str) else group["full_path"]
                if self._find_group(group_path) is None:
                    self.add_group(group_path)
            for project in data.get("projects", []):
                self.add_project(project if isinstance(project, str) else project["path_with_namespace"])
            for member in data.get("members", []):
                self.add_member(
                    member["kind"],
                    member["path"],
                    member["username"],
                    int(member["access_level"]),
                    member.get("expires_at"),
                )

    # ------------------------------------------------------------------ hierarchy (lock held)

    def _group_chain(self, group_id: int) -> list[Group]:
        """The group and its ancestors, closest first."""
        chain: list[Group] = []
        current: int | None = group_id
        while current is not None:
            group = self._groups[current]
            chain.append(group)
            current = group.parent_id
        return chain

    def _sources_chain(self, kind: str, source_id: int) -> list[tuple[SourceKey, Group | None]]:
        """Membership sources that grant access to a group/project, closest first."""
        if kind == "project":
            project = self._projects[source_id]
            return [(("project", source_id), None)] + [
                (("group", g.id), g) for g in self._group_chain(project.namespace_id)
            ]
        return [(("group", g.id), g) for g in self._group_chain(source_id)]

    def _effective_members(self, kind: str, source_id: int) -> dict[int, tuple[User, Membership]]:
        """members/all: per user the membership with the highest access level (GitLab docs); on a
        tie the closest one."""
        result: dict[int, tuple[User, Membership]] = {}
        for key, _group in self._sources_chain(kind, source_id):
            for uid, m in self._members[key].items():
                best = result.get(uid)
                if best is None or m.access_level > best[1].access_level:
                    result[uid] = (self._users[uid], m)
        return result

    def _highest_inherited(self, kind: str, source_id: int, user_id: int) -> tuple[Group, Membership] | None:
        """Member#highest_group_member: the strongest membership in the ancestor groups."""
        best: tuple[Group, Membership] | None = None
        for key, group in self._sources_chain(kind, source_id)[1:]:
            m = self._members[key].get(user_id)
            if group is None or m is None:
                continue
            if best is None or m.access_level > best[1].access_level:
                best = (group, m)
        return best

    def _self_and_descendants(self, group_id: int) -> set[int]:
        found = {group_id}
        changed = True
        while changed:
            changed = False
            for group in self._groups.values():
                if group.parent_id in found and group.id not in found:
                    found.add(group.id)
                    changed = True
        return found

    def _is_last_owner(self, group_id: int, user_id: int) -> bool:
        """Group#last_owner?: owners of the group and its ancestors; blocked owners only count
        when no active owner is left (member_last_blocked_owner?)."""
        owners = {
            uid
            for g in self._group_chain(group_id)
            for uid, m in self._members[("group", g.id)].items()
            if m.access_level == OWNER
        }
        active = {uid for uid in owners if self._users[uid].state == "active"}
        if user_id in active:
            return active == {user_id}
        return user_id in owners and not active and owners == {user_id}

    # ------------------------------------------------------------------ lookups (lock held)

    def _new_source_id(self) -> int:
        self._next_source_id += 1
        return self._next_source_id

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _find_user_by_username(self, username: str) -> User | None:
        lowered = username.lower()
        return next((u for u in self._users.values() if u.username.lower() == lowered), None)

    def _require_user(self, username: str) -> User:
        user = self._find_user_by_username(username)
        if user is None:
            raise KeyError(f"unknown user {username!r}")
        return user

    def _find_group(self, full_path: str) -> Group | None:
        lowered = full_path.strip("/").lower()
        return next((g for g in self._groups.values() if g.full_path.lower() == lowered), None)

    def _find_project(self, path: str) -> Project | None:
        lowered = path.strip("/").lower()
        return next((p for p in self._projects.values() if p.path_with_namespace.lower() == lowered), None)

    def _require_source(self, kind: str, path: str) -> SourceKey:
        if kind == "group":
            group = self._find_group(path)
            if group is None:
                raise KeyError(f"unknown group {path!r}")
            return ("group", group.id)
        if kind == "project":
            project = self._find_project(path)
            if project is None:
                raise KeyError(f"unknown project {path!r}")
            return ("project", project.id)
        raise ValueError(f"kind must be 'group' or 'project', not {kind!r}")

    def _resolve_source(self, kind: str, ident: str) -> int:
        """find_group!/find_project!: digits are ids, anything else a full path."""
        if kind == "group":
            group = self._groups.get(int(ident)) if ident.isdigit() else self._find_group(ident)
            if group is None:
                raise not_found("Group")
            return group.id
        project = self._projects.get(int(ident)) if ident.isdigit() else self._find_project(ident)
        if project is None:
            raise not_found("Project")
        return project.id
