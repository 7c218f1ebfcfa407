"""Which handler answers which GitLab v4 path, authentication and scopes, and the read handlers.

Why apart: the URL space and the token rules are what the operator's client depends on most;
the handlers here only read state (member writes live in `members`).
"""

from __future__ import annotations

from collections.abc import Callable
from email.message import Message

from reconciler_testing.gitlab.api import (
    READ_METHODS,
    ApiError,
    Json,
    get_bool,
    message,
    not_found,
    param_error,
    parse_user_id,
    record_not_found,
    user_ids_filter,
)
from reconciler_testing.gitlab.members import GitLabMembers
from reconciler_testing.gitlab.paging import Page
from reconciler_testing.gitlab.state import OWNER, Membership, Token, User, now_iso
from reconciler_testing.harness import Response

# Rack::OAuth2 DEFAULT_DESCRIPTION[:insufficient_scope], sent by APIGuard for a too-weak token.
_INSUFFICIENT_SCOPE = "The request requires higher privileges than provided by the access token."

HandlerFn = Callable[[str, User, Json, Page], Response]


def _bind(fn: Callable[..., Response], *args: str) -> HandlerFn:
    """Partial application that keeps mypy happy about the handler signature."""

    def bound(verb: str, user: User, params: Json, page: Page) -> Response:
        return fn(*args, verb, user, params, page)

    return bound


def _filter_members(rows: list[tuple[User, Membership]], params: Json) -> list[tuple[User, Membership]]:
    """The documented ``query`` and ``user_ids`` filters of the members list endpoints."""
    ids = user_ids_filter(params)
    if ids is not None:
        rows = [r for r in rows if r[0].id in ids]
    query = params.get("query")
    if isinstance(query, str) and query:
        needle = query.lower()
        rows = [r for r in rows if needle in r[0].username.lower() or needle in r[0].name.lower()]
    return rows


class GitLabRoutes(GitLabMembers):
    """Routing, authentication and the handlers (called with the lock held)."""

    def _match(self, parts: list[str]) -> tuple[HandlerFn | None, frozenset[str]]:
        """Map path segments to a handler and the methods it allows."""
        n = len(parts)
        get = frozenset({"GET"})
        if parts == ["user"]:
            return self._h_current_user, get
        if parts == ["personal_access_tokens", "self"]:
            return self._h_token_self, get
        if n == 1 and parts[0] == "users":
            return self._h_users, get
        if n == 2 and parts[0] == "users":
            return _bind(self._h_user, parts[1]), get
        if n >= 2 and parts[0] in ("groups", "projects"):
            kind = "group" if parts[0] == "groups" else "project"
            ident = parts[1]
            if n == 2:
                return _bind(self._h_source, kind, ident), get
            if n >= 3 and parts[2] == "members":
                if n == 3:
                    return _bind(self._h_members, kind, ident), frozenset({"GET", "POST"})
                if n == 4 and parts[3] == "all":
                    return _bind(self._h_members_all, kind, ident), get
                if n == 5 and parts[3] == "all":
                    return _bind(self._h_member_all, kind, ident, parts[4]), get
                if n == 4:
                    return _bind(self._h_member, kind, ident, parts[3]), frozenset({"GET", "PUT", "DELETE"})
        return None, frozenset()

    def _find_token(self, params: Json, headers: Message) -> Token | None:
        token = headers.get("PRIVATE-TOKEN")
        auth = headers.get("Authorization") or ""
        if not token and auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        if not token:
            raw = params.get("private_token") or params.get("access_token")
            token = raw if isinstance(raw, str) else None
        return self._tokens.get(token) if token else None

    def _authenticate(self, method: str, parts: list[str], params: Json, headers: Message) -> User:
        """PRIVATE-TOKEN or Bearer token; scopes and blocked users as in API::APIGuard."""
        found = self._find_token(params, headers)
        if found is None or found.user_id not in self._users:
            raise message(401, "401 Unauthorized")
        if not self._scope_allows(found.scopes, method, parts):
            required = "api" if method not in READ_METHODS else "api read_api"
            raise ApiError(
                403,
                {
                    "error": "insufficient_scope",
                    "error_description": _INSUFFICIENT_SCOPE,
                    "scope": required,
                },
                [("WWW-Authenticate", f'Bearer realm="", error="insufficient_scope", scope="{required}"')],
            )
        user = self._users[found.user_id]
        if user.state == "blocked":
            raise message(403, "403 Forbidden - Your account has been blocked.")
        return user

    @staticmethod
    def _scope_allows(scopes: frozenset[str], method: str, parts: list[str]) -> bool:
        if "api" in scopes:
            return True
        if method in READ_METHODS and parts == ["personal_access_tokens", "self"]:
            return True  # a token may always describe itself, whatever its scopes
        if method in READ_METHODS and "read_api" in scopes:
            return True
        return method in READ_METHODS and "read_user" in scopes and parts[:1] in (["user"], ["users"])

    def _h_token_self(self, verb: str, user: User, params: Json, page: Page) -> Response:
        """GET /personal_access_tokens/self: the token of the request, as the PAT API describes it."""
        token = self._find_token(params, page.headers)
        assert token is not None  # _authenticate found it
        return Response.json(
            {
                "id": token.id,
                "name": f"token-{token.id}",
                "revoked": False,
                "created_at": "2026-01-01T00:00:00.000Z",
                "description": None,
                "scopes": sorted(token.scopes),
                "user_id": user.id,
                "last_used_at": now_iso(),
                "active": True,
                "expires_at": None,
            }
        )

    def _h_current_user(self, verb: str, user: User, params: Json, page: Page) -> Response:
        return Response.json(self._user_json(user, page.base))

    def _h_users(self, verb: str, user: User, params: Json, page: Page) -> Response:
        users = sorted(self._users.values(), key=lambda u: u.id, reverse=True)
        username = params.get("username")
        if isinstance(username, str) and username:
            users = [u for u in users if u.username.lower() == username.lower()]
        search = params.get("search")
        if isinstance(search, str) and search:
            needle = search.lower()
            users = [u for u in users if needle in u.username.lower() or needle in u.name.lower()]
        if get_bool(params, "active"):
            users = [u for u in users if u.state == "active"]
        if get_bool(params, "blocked"):
            users = [u for u in users if u.state == "blocked"]
        return page.respond([self._user_json(u, page.base) for u in users], params)

    def _h_user(self, user_ident: str, verb: str, user: User, params: Json, page: Page) -> Response:
        if not user_ident.isdigit():
            raise param_error("id is invalid")
        found = self._users.get(int(user_ident))
        if found is None:
            raise not_found("User")
        return Response.json(self._user_json(found, page.base))

    def _h_source(self, kind: str, ident: str, verb: str, user: User, params: Json, page: Page) -> Response:
        source_id = self._resolve_source(kind, ident)
        if kind == "group":
            return Response.json(self._group_json(self._groups[source_id], page.base))
        return Response.json(self._project_json(self._projects[source_id], page.base))

    def _h_members(self, kind: str, ident: str, verb: str, user: User, params: Json, page: Page) -> Response:
        if verb == "POST":
            return self._create_member(kind, ident, params, page)
        source_id = self._resolve_source(kind, ident)
        rows = [
            (self._users[uid], m)
            for uid, m in sorted(self._members[(kind, source_id)].items(), key=lambda kv: kv[1].seq)
        ]
        rows = _filter_members(rows, params)
        return page.respond([self._member_json(u, m, page.base) for u, m in rows], params)

    def _h_members_all(
        self, kind: str, ident: str, verb: str, user: User, params: Json, page: Page
    ) -> Response:
        source_id = self._resolve_source(kind, ident)
        rows = sorted(self._effective_members(kind, source_id).values(), key=lambda um: um[1].seq)
        rows = _filter_members(rows, params)
        return page.respond([self._member_json(u, m, page.base) for u, m in rows], params)

    def _h_member_all(
        self, kind: str, ident: str, user_ident: str, verb: str, user: User, params: Json, page: Page
    ) -> Response:
        user_id = parse_user_id(user_ident)
        source_id = self._resolve_source(kind, ident)
        row = self._effective_members(kind, source_id).get(user_id)
        if row is None:
            raise record_not_found()
        return Response.json(self._member_json(row[0], row[1], page.base))

    def _h_member(
        self, kind: str, ident: str, user_ident: str, verb: str, user: User, params: Json, page: Page
    ) -> Response:
        user_id = parse_user_id(user_ident)
        if verb == "PUT":
            return self._update_member(kind, ident, user_id, params, page)
        skip_subresources = get_bool(params, "skip_subresources") if verb == "DELETE" else False
        get_bool(params, "unassign_issuables")  # validated like Grape does; nothing to unassign here
        source_id = self._resolve_source(kind, ident)
        membership = self._members[(kind, source_id)].get(user_id)
        if membership is None:
            raise record_not_found()
        if verb == "GET":
            return Response.json(self._member_json(self._users[user_id], membership, page.base))
        if kind == "group" and membership.access_level == OWNER and self._is_last_owner(source_id, user_id):
            raise message(403, "403 Forbidden")
        del self._members[(kind, source_id)][user_id]
        if kind == "group" and not skip_subresources:
            self._delete_subresource_memberships(source_id, user_id)
        return Response(204)
