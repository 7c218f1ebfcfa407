"""GitLab's JSON entities and the member writes (add, change, remove) with their model validations.

Why apart: these are the rules the operator's writes meet (inherited levels, last owner, expiry),
kept next to the entity shapes the answers carry.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from reconciler_testing.gitlab.api import (
    Json,
    get_date,
    get_int,
    message,
    not_found,
    param_error,
    record_not_found,
)
from reconciler_testing.gitlab.paging import Page
from reconciler_testing.gitlab.state import (
    ACCESS_NAMES,
    OWNER,
    VALID_LEVELS,
    GitLabState,
    Group,
    Membership,
    Project,
    User,
    now_iso,
)
from reconciler_testing.harness import Response


class GitLabMembers(GitLabState):
    """The state plus what the API renders from it and the member writes (lock held by the caller)."""

    # ------------------------------------------------------------------ JSON entities

    def _user_json(self, user: User, base: str) -> Json:
        return {
            "id": user.id,
            "username": user.username,
            "name": user.name,
            "state": user.state,
            "locked": False,
            "avatar_url": None,
            "web_url": f"{base}/{user.username}",
        }

    def _member_json(self, user: User, m: Membership, base: str) -> Json:
        return {
            **self._user_json(user, base),
            "access_level": m.access_level,
            "created_at": m.created_at,
            "expires_at": m.expires_at,
            "membership_state": "active",
            "group_saml_identity": None,
        }

    def _group_json(self, group: Group, base: str) -> Json:
        chain = list(reversed(self._group_chain(group.id)))
        return {
            "id": group.id,
            "name": group.name,
            "path": group.path,
            "full_name": " / ".join(g.name for g in chain),
            "full_path": group.full_path,
            "parent_id": group.parent_id,
            "description": "",
            "visibility": "private",
            "web_url": f"{base}/groups/{group.full_path}",
        }

    def _project_json(self, project: Project, base: str) -> Json:
        namespace = self._groups[project.namespace_id]
        group = self._group_json(namespace, base)
        return {
            "id": project.id,
            "name": project.name,
            "path": project.path,
            "path_with_namespace": project.path_with_namespace,
            "name_with_namespace": f"{group['full_name']} / {project.name}",
            "description": "",
            "default_branch": "main",
            "visibility": "private",
            "archived": False,
            "namespace": {
                "id": namespace.id,
                "name": namespace.name,
                "path": namespace.path,
                "kind": "group",
                "full_path": namespace.full_path,
                "parent_id": namespace.parent_id,
                "web_url": group["web_url"],
            },
            "web_url": f"{base}/{project.path_with_namespace}",
        }

    # ------------------------------------------------------------------ member writes

    def _create_member(self, kind: str, ident: str, params: Json, page: Page) -> Response:
        access_level = get_int(params, "access_level", required=True)
        assert access_level is not None
        has_id = params.get("user_id") not in (None, "")
        has_name = params.get("username") not in (None, "")
        if has_id and has_name:
            raise param_error("user_id, username are mutually exclusive")
        if not has_id and not has_name:
            raise param_error("user_id, username are missing, at least one parameter must be provided")
        expires_at = get_date(params, "expires_at")
        source_id = self._resolve_source(kind, ident)
        if has_id:
            raw_id = str(params["user_id"])
            if "," in raw_id:
                raise message(400, "several user_ids in one request are not supported by the test server")
            if not raw_id.strip().isdigit():
                raise param_error("user_id is invalid")
            target = self._users.get(int(raw_id))
        else:
            target = self._find_user_by_username(str(params["username"]))
        if target is None:
            raise not_found("User")
        if target.id in self._members[(kind, source_id)]:
            raise message(409, "Member already exists")
        self._validate_membership(kind, source_id, target.id, access_level, expires_at)
        membership = Membership(
            access_level, expires_at.isoformat() if expires_at else None, now_iso(), self._next_seq()
        )
        self._members[(kind, source_id)][target.id] = membership
        return Response.json(self._member_json(target, membership, page.base), status=201)

    def _update_member(self, kind: str, ident: str, user_id: int, params: Json, page: Page) -> Response:
        access_level = get_int(params, "access_level", required=True)
        assert access_level is not None
        clear_expiry = "expires_at" in params and params["expires_at"] in (None, "")
        expires_at = get_date(params, "expires_at")
        source_id = self._resolve_source(kind, ident)
        membership = self._members[(kind, source_id)].get(user_id)
        if membership is None:
            raise record_not_found()
        if kind == "group" and membership.access_level == OWNER and self._is_last_owner(source_id, user_id):
            raise message(403, "403 Forbidden")
        self._validate_membership(kind, source_id, user_id, access_level, expires_at)
        membership.access_level = access_level
        if expires_at is not None:
            membership.expires_at = expires_at.isoformat()
        elif clear_expiry:
            membership.expires_at = None
        return Response.json(self._member_json(self._users[user_id], membership, page.base))

    def _validate_membership(
        self, kind: str, source_id: int, user_id: int, access_level: int, expires_at: date | None
    ) -> None:
        """Model validations of Member, answered as render_validation_error! (400, message hash)."""
        errors: dict[str, list[str]] = {}
        if access_level not in VALID_LEVELS[kind]:
            errors.setdefault("access_level", []).append("is not included in the list")
        else:
            inherited = self._highest_inherited(kind, source_id, user_id)
            if inherited is not None and inherited[1].access_level > access_level:
                group, m = inherited
                errors.setdefault("access_level", []).append(
                    f"should be greater than or equal to {ACCESS_NAMES.get(m.access_level, m.access_level)} "
                    f"inherited membership from group {group.name}"
                )
        if expires_at is not None and expires_at < datetime.now(UTC).date():
            errors.setdefault("expires_at", []).append("cannot be a date in the past")
        if errors:
            raise message(400, errors)

    def _delete_subresource_memberships(self, group_id: int, user_id: int) -> None:
        """Members::DestroyService without skip_subresources: projects in the group and all
        descendants, then direct memberships in descendant groups (a last owner stays)."""
        subtree = self._self_and_descendants(group_id)
        for project in self._projects.values():
            if project.namespace_id in subtree:
                self._members[("project", project.id)].pop(user_id, None)
        for sub_id in subtree - {group_id}:
            membership = self._members[("group", sub_id)].get(user_id)
            if membership is None:
                continue
            if membership.access_level == OWNER and self._is_last_owner(sub_id, user_id):
                continue
            del self._members[("group", sub_id)][user_id]
