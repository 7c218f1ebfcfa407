"""The only code that talks to Slack: slack-sdk's WebClient with retries, pagination and typed answers.

Errors become ReconcileErrors with the condition reason the operator reports (errors.py). The token
goes into the WebClient (web_client.py) and nowhere else; slack-sdk never puts it into exceptions or
(at INFO) logs. Slack's answers are validated by the models in answers.py.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import logging
import math
import time
import urllib.error
from collections.abc import Callable, Collection
from typing import Any, cast
from urllib.parse import urlsplit

from pydantic import SecretStr
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web import SlackResponse

from reconciler import deadline
from reconciler.errors import PermanentError, RateLimited, ReconcileError, TransientError
from reconciler.fleet import CACHE_ERRORS, Fleet, metrics
from reconciler.fleet.memo import LocalMemo
from reconciler.integrations.common import parse_answer, unreadable_answer
from reconciler.integrations.slack_usergroups.answers import (
    AUTH,
    CHANNELS,
    MEMBER,
    MEMBERS,
    USERGROUP,
    USERGROUP_NAMES,
    USERGROUPS,
)
from reconciler.integrations.slack_usergroups.errors import header, translate
from reconciler.integrations.slack_usergroups.models import SlackUser, SlackUsergroupState
from reconciler.integrations.slack_usergroups.web_client import web_client
from reconciler.integrations.transport import cap_retry_after
from reconciler.settings import Settings
from reconciler.tenancy import HostPolicy

log = logging.getLogger(__name__)

PAGE_SIZE = 200
TEAM_ID_TTL_SECONDS = 3600
TEAM_ID_CLAIM_MS = 3000
"""How long the runs of a new token wait for the first run's `auth.test` before asking themselves."""
TEAM_IDS = LocalMemo(60.0)
"""A token's "team|scopes" as stored in Valkey, kept a minute in the process (one GET fewer a run)."""

TIERS: dict[str, int] = {
    "auth.test": 100,
    "users.lookupByEmail": 50,
    "conversations.info": 50,
}
"""Calls per window (Slack's minute) per method and workspace; every other method reconciler uses
(usergroups.*, users.list, conversations.list) is Tier 2: 20 a minute."""
TIER_2 = 20


class SlackClient:
    """Typed, retrying access to the Slack Web API methods reconciler uses."""

    def __init__(
        self,
        token: SecretStr,
        api_url: str,
        settings: Settings,
        fleet: Fleet | None = None,
        *,
        policy: HostPolicy | None = None,
    ) -> None:
        """`policy`: connect only through it; default: the settings' allow-list where enforced.
        `fleet`: share the rate budget (and the team id) with every run on the workspace."""
        self.api_url = api_url
        self._fleet = fleet
        self._settings = settings
        self._token_hash = hashlib.sha256(f"{api_url}\n{token.get_secret_value()}".encode()).hexdigest()
        # With a fleet, 429s go through the shared budget (everyone waits, nobody sleeps long).
        self._web = web_client(token, api_url, settings, policy, inline_rate_limits=fleet is None)
        self._team_id: str | None = None
        self.scopes: frozenset[str] | None = None
        """The token's scopes, from the `x-oauth-scopes` header Slack sends on every answer."""

    # --- the account -----------------------------------------------------------------------------

    def team_id(self) -> str:
        """The workspace the token belongs to (`auth.test`), at most once an hour per token when a
        fleet cache is there (kept under the token's hash, never the token)."""
        if self._team_id is not None:
            return self._team_id
        key = self._fleet.key("slack-token", self._token_hash) if self._fleet else ""
        cached = TEAM_IDS.get(self._fleet.client, key) if self._fleet else None
        try:
            if cached is None and self._fleet:
                cached = cast(str | None, self._fleet.client.get(key))
        except CACHE_ERRORS:
            self.go_alone()
            cached = None
        if not (isinstance(cached, str) and cached) and self._fleet is not None:
            cached = self._wait_for_first_auth_test(key)
        if isinstance(cached, str) and cached:
            if self._fleet is not None:
                TEAM_IDS.put(self._fleet.client, key, cached)
            # "team|scope,scope": the scopes too, so a run served from shared reads still knows them.
            team, _, scopes = cached.partition("|")
            self._team_id = team
            if self.scopes is None and scopes:
                self.scopes = frozenset(scopes.split(","))
            return team
        answer = self._call("auth.test", lambda: self._web.auth_test())
        self._team_id = parse_answer(AUTH, answer.data, "Slack auth.test").team_id
        try:
            if self._fleet:
                value = f"{self._team_id}|{','.join(sorted(self.scopes or ()))}"
                self._fleet.client.set(key, value, ex=TEAM_ID_TTL_SECONDS)
                TEAM_IDS.put(self._fleet.client, key, value)
        except CACHE_ERRORS:
            self.go_alone()
        return self._team_id

    def _wait_for_first_auth_test(self, key: str) -> str | None:
        """Single-flight for a token's first `auth.test`: the first run of a fleet started at once
        asks, the others wait (bounded) for its answer under `key` instead of asking too. None: we
        ask ourselves (we hold the claim, or the one who did is late or failed)."""
        assert self._fleet is not None
        try:
            if self._fleet.client.set(f"{key}:claim", "1", nx=True, px=TEAM_ID_CLAIM_MS):
                return None
            until = time.monotonic() + min(TEAM_ID_CLAIM_MS / 1000, deadline.current().remaining())
            while time.monotonic() < until:
                time.sleep(0.02)
                cached = self._fleet.client.get(key)
                if isinstance(cached, str) and cached:
                    return cached
        except CACHE_ERRORS:
            self.go_alone()
        return None

    def go_alone(self) -> None:
        """Valkey is gone: finish this run without the shared budget (as without a fleet)."""
        if self._fleet is not None:
            log.warning("Valkey is unreachable: this run calls Slack without the shared rate budget")
        self._fleet = None

    def account(self) -> str:
        """What shared state is keyed by: the API host (Slack, GovSlack, a test server) and team."""
        return f"slack:{urlsplit(self.api_url).netloc}:{self.team_id()}"

    # --- reads -----------------------------------------------------------------------------------

    def list_all_usergroups(self) -> list[SlackUsergroupState]:
        """Every user group in full, for the snapshot shared by all Reconciles of the workspace."""
        answer = self._call(
            "usergroups.list",
            lambda: self._web.usergroups_list(include_disabled=True, include_users=True),
        )
        raw: object = answer.get("usergroups", [])
        if not isinstance(raw, list):
            raise TransientError("BadResponse", "Slack usergroups.list answered without a list of usergroups")
        return [g.to_state() for g in parse_answer(USERGROUPS, raw, "Slack usergroups.list")]

    def lookup_user(self, email: str) -> SlackUser | None:
        """One user by e-mail (Tier 3); None when Slack knows no active user with it."""
        try:
            answer = self._call("users.lookupByEmail", lambda: self._web.users_lookupByEmail(email=email))
        except PermanentError as exc:
            if exc.message.endswith("users_not_found"):
                return None
            raise
        member = parse_answer(MEMBER, answer.get("user"), "Slack users.lookupByEmail")
        if member.is_bot:
            return None
        return SlackUser(id=member.id, email=email.lower(), deleted=member.deleted)

    def list_usergroups(self, managed: Collection[str]) -> list[SlackUsergroupState]:
        """Every user group; only the `managed` handles in full (members, channels).

        Slack cannot filter usergroups.list, so a workspace with many groups answers with all of
        them on every run: validating just handle and name for the others keeps that cheap (the
        planner only needs their names, to refuse a name another group holds).
        """
        answer = self._call(
            "usergroups.list",
            lambda: self._web.usergroups_list(include_disabled=True, include_users=True),
        )
        raw: object = answer.get("usergroups", [])
        if not isinstance(raw, list):
            raise TransientError("BadResponse", "Slack usergroups.list answered without a list of usergroups")
        wanted = set(managed)
        full = [item for item in raw if isinstance(item, dict) and item.get("handle") in wanted]
        others = [item for item in raw if not (isinstance(item, dict) and item.get("handle") in wanted)]
        groups = [g.to_state() for g in parse_answer(USERGROUPS, full, "Slack usergroups.list")]
        groups += [g.to_state() for g in parse_answer(USERGROUP_NAMES, others, "Slack usergroups.list")]
        return groups

    def list_users(self) -> list[SlackUser]:
        members = self._paginate(
            "users.list", "members", lambda cursor: self._web.users_list(cursor=cursor, limit=PAGE_SIZE)
        )
        parsed = parse_answer(MEMBERS, members, "Slack users.list")
        return [m.to_user() for m in parsed if not m.is_bot]

    def list_users_page(self, cursor: str | None) -> tuple[list[SlackUser], str | None]:
        """One page of users.list (bots left out) and the next cursor, for resumable sweeps."""
        answer = self._call("users.list", lambda: self._web.users_list(cursor=cursor, limit=PAGE_SIZE))
        page: object = answer.get("members", [])
        if not isinstance(page, list):
            raise TransientError("BadResponse", "Slack users.list answered without a list of members")
        parsed = parse_answer(MEMBERS, page, "Slack users.list")
        users = [m.to_user() for m in parsed if not m.is_bot]
        return users, (answer.get("response_metadata") or {}).get("next_cursor") or None

    def list_channels(self) -> dict[str, str]:
        """Channel name -> id of unarchived public channels (needs only `channels:read`)."""
        channels = self._paginate(
            "conversations.list",
            "channels",
            lambda cursor: self._web.conversations_list(
                cursor=cursor, limit=PAGE_SIZE, exclude_archived=True, types="public_channel"
            ),
        )
        parsed = parse_answer(CHANNELS, channels, "Slack conversations.list")
        return {c.name: c.id for c in parsed if not c.is_archived}

    # --- writes ----------------------------------------------------------------------------------

    def create_usergroup(self, handle: str, name: str, description: str, channel_ids: tuple[str, ...]) -> str:
        answer = self._call(
            "usergroups.create",
            lambda: self._web.usergroups_create(
                name=name, handle=handle, description=description, channels=list(channel_ids)
            ),
        )
        return parse_answer(USERGROUP, answer.get("usergroup"), "Slack usergroups.create").id

    def update_usergroup(
        self,
        usergroup_id: str,
        *,
        name: str | None,
        description: str | None,
        channel_ids: tuple[str, ...] | None,
    ) -> None:
        params: dict[str, Any] = {"usergroup": usergroup_id}
        if name is not None:
            params["name"] = name
        if description is not None:
            params["description"] = description
        if channel_ids is not None:
            params["channels"] = ",".join(channel_ids)
        self._call("usergroups.update", lambda: self._web.api_call("usergroups.update", params=params))

    def set_users(self, usergroup_id: str, user_ids: tuple[str, ...]) -> None:
        self._call(
            "usergroups.users.update",
            lambda: self._web.usergroups_users_update(usergroup=usergroup_id, users=list(user_ids)),
        )

    def enable(self, usergroup_id: str) -> None:
        self._call("usergroups.enable", lambda: self._web.usergroups_enable(usergroup=usergroup_id))

    def disable(self, usergroup_id: str) -> None:
        self._call("usergroups.disable", lambda: self._web.usergroups_disable(usergroup=usergroup_id))

    # --- plumbing --------------------------------------------------------------------------------

    def _paginate(self, method: str, key: str, fetch: Callable[[str | None], SlackResponse]) -> list[Any]:
        items: list[Any] = []
        cursor: str | None = None
        max_pages = self._settings.max_pages
        for _ in range(max_pages):
            answer = self._call(method, functools.partial(fetch, cursor))
            page: object = answer.get(key, [])
            if not isinstance(page, list):
                raise TransientError("BadResponse", f"Slack {method} answered without a list of {key}")
            items.extend(page)
            cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return items
        raise TransientError(
            "BadResponse",
            f"Slack {method} kept paginating past {max_pages} pages (RECONCILER_MAX_PAGES); "
            "is spec.slackUsergroups.apiUrl a Slack API?",
        )

    def _call(self, method: str, send: Callable[[], SlackResponse]) -> SlackResponse:
        try:
            return self._call_within_budget(method, send)
        except CACHE_ERRORS:
            self.go_alone()
            return self._send(method, send)

    def queue_token(self, method: str) -> None:
        """Ask for `method`'s budget token in the run's next round trip (see RateBudget.queue_token):
        for the apply's first call, whose token then rides with the planned save."""
        if self._fleet is not None:
            self._fleet.budget.queue_token(
                self._budget_key(method), TIERS.get(method, TIER_2), self._settings.slack_rate_window_seconds
            )

    def _budget_key(self, method: str) -> str:
        if method == "auth.test":
            return f"slack-token:{self._token_hash}:{method}"
        return f"{self.account()}:{method}"

    def _call_within_budget(self, method: str, send: Callable[[], SlackResponse]) -> SlackResponse:
        if self._fleet is None:
            return self._send(method, send)
        budget_key = self._budget_key(method)
        window = self._settings.slack_rate_window_seconds
        for _ in range(self._settings.rate_limit_retries + 1):
            self._fleet.budget.acquire(
                budget_key,
                TIERS.get(method, TIER_2),
                window,
                f"Slack {method}",
                integration=metrics.SLACK,
                method=method,
            )
            try:
                return self._send(method, send)
            except ReconcileError as exc:
                if exc.reason != "RateLimited":
                    raise
                # Slack said wait: so does everyone on this workspace and method.
                self._fleet.budget.block(budget_key, exc.retry_after if exc.retry_after else 1.0)
        raise RateLimited(
            f"Slack {method} is still rate limited after {self._settings.rate_limit_retries} retries",
            retry_after=window,
        )

    def _send(self, method: str, send: Callable[[], SlackResponse]) -> SlackResponse:
        log.debug("slack %s", method)
        run = deadline.current()
        # Each attempt's timeout is the call's own, but never past the run's deadline.
        self._web.timeout = math.ceil(
            run.timeout(self._settings.http_timeout_seconds, f"calling Slack {method}")
        )
        try:
            answer = send()
        except SlackApiError as exc:
            self._remember_scopes(exc.response)
            error = translate(method, exc.response)
            raise (
                cap_retry_after(error, self._settings) if isinstance(error, RateLimited) else error
            ) from None
        except (
            urllib.error.URLError,
            TimeoutError,
            ConnectionError,
            SlackRequestError,
            http.client.HTTPException,
            ValueError,  # a body cut short by the deadline is not JSON
        ) as exc:
            if run.expired:
                raise run.error(f"calling Slack {method}") from None
            if isinstance(exc, ValueError):  # JSON cut mid-way: the one classification of such answers
                raise unreadable_answer("Slack", method, 200) from None
            reason = getattr(exc, "reason", exc)
            raise TransientError("SlackUnavailable", f"Slack {method} failed: {reason}") from None
        self._remember_scopes(answer)
        return answer

    def _remember_scopes(self, response: SlackResponse) -> None:
        raw = header(response, "x-oauth-scopes")
        if raw is not None:
            self.scopes = frozenset(scope.strip() for scope in raw.split(",") if scope.strip())
