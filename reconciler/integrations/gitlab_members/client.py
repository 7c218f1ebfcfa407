"""The only code that talks to GitLab: python-gitlab's REST v4 client, with bounded retries and typed answers.

Retries, per HTTP request (so a retried page of a listing does not restart the listing):
- HTTP 429: python-gitlab waits out `Retry-After` (`obey_rate_limit`, passed on every call), at most
  `settings.rate_limit_retries` times (`max_retries`, also a per-call argument in python-gitlab 8).
- connection errors, timeouts and 5xx: at most `settings.transient_retries` times, with a short
  backoff, by the urllib3 retry of the session python-gitlab uses. python-gitlab's own
  `retry_transient_errors` is off because it counts against the same `max_retries` as 429s, so
  neither setting could be honoured exactly.
Every request has `settings.http_timeout_seconds` as timeout (the Gitlab object's default), cut to
what is left of the run's deadline; the deadline also cuts a slow answer and ends retries. A 429
asking for more than `rate_limit_inline_wait_seconds` ends the run as RateLimited instead of
sleeping. Listings are our own page loop, at most `settings.max_pages` pages, following GitLab's
`X-Next-Page` number (never a URL from the answer, which could name another host).

Errors become ReconcileErrors with the condition reason the operator reports. The token goes into
the PRIVATE-TOKEN header and nowhere else: it is dropped on redirects to another host, and every
message is scrubbed of it as a last line of defence.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import gitlab
import gitlab.const
import gitlab.exceptions
import requests
from pydantic import BaseModel, ConfigDict, SecretStr, TypeAdapter

from reconciler import __version__, deadline
from reconciler.errors import (
    Forbidden,
    MissingScope,
    PermanentError,
    RateLimited,
    ReconcileError,
    TransientError,
    Unauthorized,
)
from reconciler.fleet import CACHE_ERRORS, Fleet
from reconciler.integrations.common import parse_answer, service_text, unreadable_answer
from reconciler.integrations.egress import GuardedAdapter, policy_for
from reconciler.integrations.gitlab_members.models import GitlabMemberState, GitlabUser, SourceKind
from reconciler.integrations.transport import (
    DeadlineAdapter,
    DeadlineRetry,
    cap_retry_after,
    inline_wait,
    retry_after_seconds,
)
from reconciler.settings import Settings
from reconciler.tenancy import HostPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")

PER_PAGE = 100
USER_AGENT = f"reconciler/{__version__}"


# --- GitLab's answers, validated ------------------------------------------------------------------


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _User(_Answer):
    id: int
    username: str
    state: str = "active"

    def to_user(self) -> GitlabUser:
        return GitlabUser(id=self.id, username=self.username, state=self.state)


class _Member(_User):
    access_level: int
    expires_at: date | None = None

    def to_member(self) -> GitlabMemberState:
        return GitlabMemberState(
            id=self.id,
            username=self.username,
            state=self.state,
            access_level=self.access_level,
            expires_at=self.expires_at,
        )


class _TokenInfo(_Answer):
    scopes: list[str]


_USER = TypeAdapter(_User)
_TOKEN_INFO = TypeAdapter(_TokenInfo)
_USERS = TypeAdapter(list[_User])
_MEMBERS = TypeAdapter(list[_Member])


class _Session(requests.Session):
    """requests strips `Authorization` on a redirect to another host; do the same for PRIVATE-TOKEN.

    Every request (retries and redirects included) gets min(its timeout, time left of the run).
    """

    before_send: Callable[[], None] | None = None
    """Draws one request from the shared rate budget (set when the run has a fleet)."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if self.before_send is not None:
            self.before_send()
        timeout = kwargs.get("timeout")
        call_timeout = float(max(timeout) if isinstance(timeout, tuple) else timeout or 30.0)
        kwargs["timeout"] = deadline.current().timeout(call_timeout, "calling GitLab")
        return super().send(request, **kwargs)

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        old_url, new_url = response.request.url, prepared_request.url
        if old_url and new_url and self.should_strip_auth(old_url, new_url):  # type: ignore[no-untyped-call]
            prepared_request.headers.pop("PRIVATE-TOKEN", None)


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
        session = _Session()
        policy = policy or policy_for(settings)
        adapter_cls = functools.partial(GuardedAdapter, policy) if policy is not None else DeadlineAdapter
        if policy is not None:
            session.trust_env = False  # a proxy from the environment would resolve names unchecked
        adapter = adapter_cls(
            max_retries=DeadlineRetry(
                total=settings.transient_retries,
                status_forcelist=gitlab.const.RETRYABLE_TRANSIENT_ERROR_CODES,
                allowed_methods=None,  # writes too: add/remove are made idempotent by the callers
                backoff_factor=0.25,
                backoff_max=5,
                raise_on_status=False,  # the last 5xx answer reaches python-gitlab and is translated
                raise_on_redirect=False,
                respect_retry_after_header=False,  # 429s are python-gitlab's, counted separately
            )
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.hooks["response"].append(self._on_rate_limit)
        self._token_hash = hashlib.sha256(f"{self.url}\n{self._secret}".encode()).hexdigest()
        self._user_id: int | None = None
        if fleet is not None:
            session.before_send = self._take_budget
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
        user = parse_answer(_USER, answer, "GitLab GET /user").to_user()
        if self._fleet is not None and self._user_id != user.id:
            # The next run of this token draws even its GET /user from the user's budget.
            with contextlib.suppress(*CACHE_ERRORS):
                self._fleet.client.set(self._token_user_key(), str(user.id), ex=TOKEN_USER_TTL_SECONDS)
            self.adopt_user(user)
            # That GET /user was drawn from the token's budget; GitLab counted it against the user's.
            self._take_budget()
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

    def _take_budget(self, what: str | None = None, limit: int | None = None) -> None:
        """One request from the budget every run of this GitLab user shares (all replicas); with
        `what`, from that narrower budget of the user instead (a per-endpoint limit)."""
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
                key, limit or settings.gitlab_rate_limit, settings.gitlab_rate_window_seconds, "GitLab"
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
        return frozenset(parse_answer(_TOKEN_INFO, answer, "GitLab GET /personal_access_tokens/self").scopes)

    def list_members(self, kind: SourceKind, path: str) -> list[GitlabMemberState] | None:
        """Direct members (never inherited ones) of a group or project; None if GitLab shows no such one."""
        url = f"{_source_url(kind, path)}/members"
        try:
            answer = self._list_pages(f"list the members of {kind} {path}", url)
        except PermanentError as exc:
            if exc.reason == "NotFound":
                return None
            raise
        return [m.to_member() for m in parse_answer(_MEMBERS, answer, f"GitLab GET {url}")]

    def find_user(self, username: str) -> GitlabUser | None:
        answer = self._call(
            f"look up the user {username}",
            lambda **kw: self._gl.http_list("/users", query_data={"username": username}, get_all=False, **kw),
        )
        users = parse_answer(_USERS, answer, "GitLab GET /users")
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
                f"delete-member:{kind}:{path.casefold()}", self._fleet.settings.gitlab_member_delete_limit
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
        status = exc.response_code or 0
        body = _json_body(exc.response_body)
        # Only GitLab's documented `message`/`error` fields, never a raw (HTML, proxy) body.
        message = self._scrub(_describe(body, f"HTTP {status}"))
        if status == 429:
            return cap_retry_after(
                RateLimited(
                    f"GitLab is still rate limiting after {self._rate_limit_retries} retries ({what})",
                    retry_after=self._retry_after,
                ),
                self._settings,
            )
        if status >= 500 or not _is_json(exc.response_body):
            return unreadable_answer("GitLab", what, status)
        if status == 403:
            if body.get("error") == "insufficient_scope":
                return MissingScope(f"the token lacks the api scope needed to {what} (GitLab: {message})")
            return Forbidden(f"GitLab refused to {what}: {message}")
        if status == 404:
            if "group not found" in message.lower() or "project not found" in message.lower():
                return PermanentError("NotFound", f"cannot {what}: GitLab answered {message}")
            if member_gone:
                return TransientError("MemberGone", f"cannot {what}: not a member now; the next run re-plans")
            if "user not found" in message.lower():
                return TransientError("UserGone", f"cannot {what}: the user is gone; the next run re-plans")
            return PermanentError("NotFound", f"cannot {what}: GitLab answered {message}")
        if status == 409:
            return PermanentError("Conflict", f"GitLab refused to {what}: {message}")
        if status == 400:
            return PermanentError("InvalidSpec", f"GitLab refused to {what}: {message}")
        return PermanentError("GitLabError", f"GitLab answered HTTP {status} to {what}: {message}")

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

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "[token]") if self._secret else text


def _next_page(response: requests.Response) -> int | None:
    """The next page's number from `X-Next-Page` (empty on the last page)."""
    raw = response.headers.get("X-Next-Page", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


def _source_url(kind: SourceKind, path: str) -> str:
    return f"/{kind}s/{quote(path, safe='')}"


def _is_json(raw: bytes | None) -> bool:
    try:
        json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def _json_body(raw: bytes | None) -> dict[str, Any]:
    try:
        parsed = json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _describe(body: Mapping[str, Any], fallback: object) -> str:
    """GitLab's error body as one line: `{"message": {"access_level": ["should be ..."]}}` ->
    `access_level should be ...`; OAuth errors as `error: error_description`."""
    message = body.get("message", body.get("error", fallback))
    if isinstance(message, Mapping):
        parts = [
            f"{field} {text}"
            for field, texts in message.items()
            for text in (texts if isinstance(texts, list) else [texts])
        ]
        return service_text("; ".join(parts))
    text = str(message)
    if "error_description" in body:
        text = f"{text}: {body['error_description']}"
    return service_text(text)
