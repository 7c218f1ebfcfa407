"""The only code that talks to GitLab: python-gitlab's REST v4 client, with bounded retries and typed answers.

Retries, per HTTP request (so a retried page of a listing does not restart the listing):
- HTTP 429: python-gitlab waits out `Retry-After` (`obey_rate_limit`, passed on every call), at most
  `settings.rate_limit_retries` times (`max_retries`, also a per-call argument in python-gitlab 8).
- connection errors, timeouts and 5xx: at most `settings.transient_retries` times, with a short
  backoff, by the urllib3 retry of the session python-gitlab uses (session.py). python-gitlab's own
  `retry_transient_errors` is off because it counts against the same `max_retries` as 429s, so
  neither setting could be honoured exactly.
Every request has `settings.http_timeout_seconds` as timeout (the Gitlab object's default), cut to
what is left of the run's deadline; the deadline also cuts a slow answer and ends retries. A 429
asking for more than `rate_limit_inline_wait_seconds` ends the run as RateLimited instead of
sleeping. Listings are our own page loop, at most `settings.max_pages` pages, following GitLab's
`X-Next-Page` number (never a URL from the answer, which could name another host).

Errors become ReconcileErrors with the condition reason the operator reports (errors.py). The token
goes into the PRIVATE-TOKEN header and nowhere else: it is dropped on redirects to another host, and
every message is scrubbed of it as a last line of defence. GitLab's answers are validated by the
models in answers.py.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import gitlab
import gitlab.exceptions
import requests
from pydantic import SecretStr

from reconciler import __version__, deadline
from reconciler.errors import PermanentError, RateLimited, ReconcileError, TransientError, Unauthorized
from reconciler.fleet import CACHE_ERRORS, Fleet, metrics
from reconciler.integrations.common import parse_answer, unreadable_answer
from reconciler.integrations.gitlab_members.answers import MEMBERS, TOKEN_INFO, USER, USERS
from reconciler.integrations.gitlab_members.errors import translate
from reconciler.integrations.gitlab_members.models import GitlabMemberState, GitlabUser, SourceKind
from reconciler.integrations.gitlab_members.session import gitlab_session
from reconciler.integrations.transport import cap_retry_after, inline_wait, retry_after_seconds
from reconciler.settings import Settings
from reconciler.tenancy import HostPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")

PER_PAGE = 100
USER_AGENT = f"reconciler/{__version__}"
TOKEN_USER_TTL_SECONDS = 3600
"""How long the token -> user id mapping (the budget's key before GET /user) is kept in Valkey."""


class GitlabClient:
    """Typed, retrying access to the GitLab REST v4 calls reconciler uses, for one (url, token)."""

    def __init__(
        self,
        url: str,
        token: SecretStr,
        settings: Settings,
        fleet: Fleet | None = None,
        *,
        policy: HostPolicy | None = None,
    ) -> None:
        """`policy`: connect only through it; default: the settings' allow-list where enforced.
        `fleet`: share the rate budget with every run of this GitLab user."""
        self.url = url.rstrip("/")
        self._fleet = fleet
        self._settings = settings
        self._secret = token.get_secret_value()
        self._settings = settings
        self._rate_limit_retries = settings.rate_limit_retries
        self._retry_after: float | None = None
        self._limited = 0
        session = gitlab_session(settings, policy)
        session.hooks["response"].append(self._on_rate_limit)
        self._token_hash = hashlib.sha256(f"{self.url}\n{self._secret}".encode()).hexdigest()
        self._user_id: int | None = None
        if fleet is not None:
            session.before_send = self._take_budget_for
        self._gl = gitlab.Gitlab(
            self.url,
            private_token=self._secret,
            timeout=settings.http_timeout_seconds,
            retry_transient_errors=False,
            keep_base_url=True,  # self-hosted GitLab behind a proxy may announce another external_url
            user_agent=USER_AGENT,
            session=session,
        )

    def close(self) -> None:
        self._gl.session.close()

    # --- reads -----------------------------------------------------------------------------------

    def current_user(self) -> GitlabUser:
        """The token's own user (`GET /user`); also proves the token works before anything else."""
        answer = self._call("read the token's user", lambda **kw: self._gl.http_get("/user", **kw))
        user = parse_answer(USER, answer, "GitLab GET /user").to_user()
        if self._fleet is not None and self._user_id != user.id:
            # The next run of this token draws even its GET /user from the user's budget.
            with contextlib.suppress(*CACHE_ERRORS):
                self._fleet.client.set(self._token_user_key(), str(user.id), ex=TOKEN_USER_TTL_SECONDS)
            self.adopt_user(user)
            # That GET /user was drawn from the token's budget; GitLab counted it against the user's.
            self._take_budget(metrics.gitlab_method("GET", "/user"))
        self.adopt_user(user)
        return user

    def adopt_user(self, user: GitlabUser) -> None:
        """The token's user as another run of this token read it (shared): the budget is its."""
        self._user_id = user.id

    def _token_user_key(self) -> str:
        return f"reconciler:fleet:gitlab:{urlsplit(self.url).netloc}:token:{self._token_hash}:user"

    def token_account(self) -> str:
        """This token on this instance (by hash): what is known of a token before its user is."""
        return f"gitlab:{urlsplit(self.url).netloc}:token:{self._token_hash}"

    def account(self) -> str:
        """What the rate budget is keyed by: GitLab limits each user per instance (until the
        token's user is known, the token's hash stands in for it)."""
        if self._user_id is None:
            return self.token_account()
        return f"gitlab:{urlsplit(self.url).netloc}:user:{self._user_id}"

    def _take_budget_for(self, request: requests.PreparedRequest) -> None:
        """The budget's draw before each request the session sends (python-gitlab's 429 retries too)."""
        self._take_budget(metrics.gitlab_method(request.method, request.url))

    def _take_budget(self, method: str, what: str | None = None, limit: int | None = None) -> None:
        """One request from the budget every run of this GitLab user shares (all replicas); with
        `what`, from that narrower budget of the user instead (a per-endpoint limit). `method`: the
        request's endpoint shape (metrics.gitlab_method), for the metrics."""
        if self._fleet is None:
            return
        settings = self._fleet.settings
        try:
            if self._user_id is None:  # the token's user as a run of this token last saw it
                cached = self._fleet.client.get(self._token_user_key())
                if isinstance(cached, str) and cached.isdigit():
                    self._user_id = int(cached)
            key = self.account() if what is None else f"{self.account()}:{what}"
            self._fleet.budget.acquire(
                key,
                limit or settings.gitlab_rate_limit,
                settings.gitlab_rate_window_seconds,
                "GitLab",
                integration=metrics.GITLAB,
                method=method,
            )
        except CACHE_ERRORS:
            log.warning("Valkey is unreachable: this run calls GitLab without the shared rate budget")
            self._fleet = None

    def token_scopes(self) -> frozenset[str] | None:
        """The scopes of a personal, group or project access token (`GET /personal_access_tokens/self`);
        None for other token kinds (OAuth, CI job tokens), which that endpoint does not describe."""
        try:
            answer = self._call(
                "read the token's scopes",
                lambda **kw: self._gl.http_get("/personal_access_tokens/self", **kw),
            )
        except PermanentError as exc:
            if exc.reason in ("NotFound", "Unauthorized", "Forbidden", "MissingScope"):
                return None
            raise
        return frozenset(parse_answer(TOKEN_INFO, answer, "GitLab GET /personal_access_tokens/self").scopes)

    def list_members(self, kind: SourceKind, path: str) -> list[GitlabMemberState] | None:
        """Direct members (never inherited ones) of a group or project; None if GitLab shows no such one."""
        url = f"{_source_url(kind, path)}/members"
        try:
            answer = self._list_pages(f"list the members of {kind} {path}", url)
        except PermanentError as exc:
            if exc.reason == "NotFound":
                return None
            raise
        return [m.to_member() for m in parse_answer(MEMBERS, answer, f"GitLab GET {url}")]

    def find_user(self, username: str) -> GitlabUser | None:
        answer = self._call(
            f"look up the user {username}",
            lambda **kw: self._gl.http_list("/users", query_data={"username": username}, get_all=False, **kw),
        )
        users = parse_answer(USERS, answer, "GitLab GET /users")
        return next((u.to_user() for u in users if u.username.casefold() == username.casefold()), None)

    # --- writes ----------------------------------------------------------------------------------

    def add_member(
        self,
        kind: SourceKind,
        path: str,
        user_id: int,
        username: str,
        access_level: int,
        expires_at: date | None,
    ) -> None:
        """Add a direct member; if it already exists (an earlier attempt's answer was lost), set it."""
        data: dict[str, Any] = {"user_id": user_id, "access_level": access_level}
        if expires_at is not None:
            data["expires_at"] = expires_at.isoformat()
        url = f"{_source_url(kind, path)}/members"
        try:
            self._call(
                f"add {username} to {kind} {path}", lambda **kw: self._gl.http_post(url, post_data=data, **kw)
            )
        except PermanentError as exc:
            if exc.reason != "Conflict":
                raise
            log.info("%s is already a member of %s %s; setting its level instead", username, kind, path)
            self.update_member(kind, path, user_id, username, access_level, expires_at, set_expiry=True)

    def update_member(
        self,
        kind: SourceKind,
        path: str,
        user_id: int,
        username: str,
        access_level: int,
        expires_at: date | None,
        *,
        set_expiry: bool,
    ) -> None:
        """Set the access level, and the expiry if `set_expiry` (None clears it); else it stays."""
        data: dict[str, Any] = {"access_level": access_level}
        if set_expiry:
            data["expires_at"] = expires_at.isoformat() if expires_at else ""
        url = f"{_source_url(kind, path)}/members/{user_id}"
        self._call(
            f"change {username} in {kind} {path}",
            lambda **kw: self._gl.http_put(url, post_data=data, **kw),
            member_gone=True,
        )

    def remove_member(self, kind: SourceKind, path: str, user_id: int, username: str) -> None:
        """Remove a direct member. From a group with skip_subresources=true: GitLab would otherwise also
        remove the user from every subgroup and project below it. Already gone counts as done."""
        url = f"{_source_url(kind, path)}/members/{user_id}"
        query = {"skip_subresources": "true"} if kind == "group" else {}
        if self._fleet is not None:  # GitLab also limits removals per group or project and user
            self._take_budget(
                metrics.gitlab_method("DELETE", url),
                f"delete-member:{kind}:{path.casefold()}",
                self._fleet.settings.gitlab_member_delete_limit,
            )
        try:
            self._call(
                f"remove {username} from {kind} {path}",
                lambda **kw: self._gl.http_delete(url, query_data=query, **kw),
                member_gone=True,
            )
        except TransientError as exc:
            if exc.reason != "MemberGone":
                raise
            log.info("%s was no longer a member of %s %s", username, kind, path)

    # --- plumbing --------------------------------------------------------------------------------

    def _list_pages(self, what: str, url: str) -> list[Any]:
        """Every page of a listing, at most `max_pages` (a GitLab that always has a next page ends)."""
        items: list[Any] = []
        page = 1
        for _ in range(self._settings.max_pages):
            query = {"per_page": PER_PAGE, "page": page}
            send = functools.partial(self._gl.http_request, "get", url, query_data=query)
            response: requests.Response = self._call(what, send)
            try:
                answer = response.json()
            except ValueError:
                raise TransientError(
                    "BadResponse", f"GitLab answered {what} with something not JSON"
                ) from None
            if not isinstance(answer, list):
                raise TransientError("BadResponse", f"GitLab answered {what} without a list")
            items.extend(answer)
            following = _next_page(response)
            if following is None:
                return items
            if following <= page:
                raise TransientError("BadResponse", f"GitLab's pages went backwards ({what})")
            page = following
        raise TransientError(
            "BadResponse",
            f"GitLab kept paginating past {self._settings.max_pages} pages (RECONCILER_MAX_PAGES) to {what}; "
            "is spec.gitlabMembers.url a GitLab?",
        )

    def _call(self, what: str, send: Callable[..., T], *, member_gone: bool = False) -> T:
        self._retry_after = None
        self._limited = 0
        log.debug("gitlab: %s", what)
        run = deadline.current()
        run.check(f"calling GitLab to {what}")
        try:
            return send(obey_rate_limit=True, max_retries=self._rate_limit_retries)
        except RateLimited as exc:
            exc.message = f"{exc.message} (to {what})"
            raise
        except gitlab.exceptions.GitlabAuthenticationError:
            raise Unauthorized(
                f"GitLab at {self.url} rejected the token (401); put a valid access token with the api "
                "scope in the Secret"
            ) from None
        except gitlab.exceptions.RedirectError:
            raise PermanentError(
                "InvalidSpec",
                f"GitLab at {self.url} answered a redirect to {what}; set spec.gitlabMembers.url to the "
                "address GitLab redirects to (https?)",
            ) from None
        except gitlab.exceptions.GitlabParsingError:
            raise unreadable_answer("GitLab", what, 200) from None
        except gitlab.exceptions.GitlabHttpError as exc:
            raise self._translate(what, exc, member_gone=member_gone) from None
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            if run.expired:
                raise run.error(f"calling GitLab to {what}") from None
            raise TransientError(
                "GitLabUnavailable", f"cannot reach GitLab at {self.url} to {what}: {type(exc).__name__}"
            ) from None
        except requests.RequestException as exc:
            if run.expired:
                raise run.error(f"calling GitLab to {what}") from None
            raise TransientError(
                "GitLabUnavailable", f"request to GitLab at {self.url} failed ({what}): {type(exc).__name__}"
            ) from None

    def _translate(
        self, what: str, exc: gitlab.exceptions.GitlabHttpError, *, member_gone: bool
    ) -> ReconcileError:
        if exc.response_code == 429:
            return cap_retry_after(
                RateLimited(
                    f"GitLab is still rate limiting after {self._rate_limit_retries} retries ({what})",
                    retry_after=self._retry_after,
                ),
                self._settings,
            )
        return translate(what, exc, member_gone=member_gone, secret=self._secret)

    def _on_rate_limit(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Before python-gitlab sleeps through a 429: allow only a short wait (else RateLimited).

        python-gitlab waits `Retry-After`, else until `RateLimit-Reset`, else 0.1s doubling per 429;
        a `Retry-After` that is not whole seconds (an HTTP date, "1.5") it cannot read at all.
        """
        if response.status_code != 429:
            return
        self._limited += 1
        headers = response.headers
        wait = retry_after_seconds(headers)
        self._retry_after = wait
        if self._fleet is not None:
            # GitLab said wait: so does every run of this user, in every replica.
            with contextlib.suppress(*CACHE_ERRORS):
                self._fleet.budget.block(self.account(), wait if wait is not None else 1.0)
        if wait is None and headers.get("RateLimit-Reset", "").isdigit():
            wait = max(0.0, int(headers["RateLimit-Reset"]) - time.time())
        elif wait is None:
            wait = 2 ** (self._limited - 1) * 0.1
        unreadable = "Retry-After" in headers and not headers["Retry-After"].strip().isdigit()
        if unreadable:
            raise cap_retry_after(
                RateLimited(
                    f"GitLab at {self.url} answered 429 with a Retry-After that is not whole seconds",
                    retry_after=self._retry_after,  # a date or "1.5" as read; garbage: None, backoff
                ),
                self._settings,
            )
        if self._limited <= self._rate_limit_retries:
            inline_wait(wait, f"GitLab at {self.url}", self._settings)


def _next_page(response: requests.Response) -> int | None:
    """The next page's number from `X-Next-Page` (empty on the last page)."""
    raw = response.headers.get("X-Next-Page", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


def _source_url(kind: SourceKind, path: str) -> str:
    return f"/{kind}s/{quote(path, safe='')}"
