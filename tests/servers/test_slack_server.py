"""The Slack test server driven through the real ``slack_sdk.WebClient`` (no monkeypatching).

These pin the documented Slack behaviour the reconciler's tests rely on: auth and scope errors, cursor
pagination, user-group write round trips and their error codes, and 429/5xx handling by the SDK's own
retry handlers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import FixedValueRetryIntervalCalculator
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler

from reconciler_testing.slack import DEFAULT_SCOPES, Call, SlackTestServer

TOKEN = "xoxb-test"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def slack() -> Iterator[SlackTestServer]:
    with SlackTestServer() as server:
        server.add_token(TOKEN)
        yield server


@pytest.fixture
def client(slack: SlackTestServer) -> WebClient:
    return WebClient(token=TOKEN, base_url=slack.api_url)


def _error(exc: pytest.ExceptionInfo[SlackApiError]) -> str:
    return str(exc.value.response["error"])


def _raw(slack: SlackTestServer, method: str, *, data: bytes | None = None, headers: dict[str, str]) -> Any:
    """Bypass the SDK where it cannot express the request (token as a form field / query param)."""
    url = slack.api_url + method  # always http://127.0.0.1
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
        return json.loads(resp.read())


# ---------------------------------------------------------------------------- lifecycle and auth


def test_api_url_and_auth_test(slack: SlackTestServer, client: WebClient) -> None:
    assert slack.api_url == f"http://127.0.0.1:{slack.port}/api/"
    resp = client.auth_test()
    assert resp["ok"] is True
    assert resp["team_id"] == "T0001"
    assert resp["user_id"]
    assert slack.calls == [Call("auth.test", {}, 200, None)]


def test_start_stop_without_context_manager() -> None:
    server = SlackTestServer().start()
    try:
        server.add_token("t")
        assert WebClient(token="t", base_url=server.api_url).auth_test()["ok"]
    finally:
        server.stop()
        server.stop()  # idempotent


def test_not_authed_invalid_auth_account_inactive(slack: SlackTestServer) -> None:
    slack.add_token("xoxb-gone", inactive=True)
    cases = {None: "not_authed", "xoxb-unknown": "invalid_auth", "xoxb-gone": "account_inactive"}
    for token, expected in cases.items():
        with pytest.raises(SlackApiError) as exc:
            WebClient(token=token, base_url=slack.api_url).users_list()
        assert exc.value.response.status_code == 200
        assert _error(exc) == expected
    assert [c.error for c in slack.calls] == list(cases.values())


def test_token_owned_by_deactivated_user_is_inactive(slack: SlackTestServer) -> None:
    owner = slack.add_user("gone@example.com", deleted=True)
    slack.add_token("xoxp-owner", user_id=owner)
    with pytest.raises(SlackApiError) as exc:
        WebClient(token="xoxp-owner", base_url=slack.api_url).auth_test()
    assert _error(exc) == "account_inactive"


def test_token_accepted_as_form_field_and_query_param(slack: SlackTestServer) -> None:
    form = _raw(
        slack,
        "auth.test",
        data=f"token={TOKEN}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form["ok"] is True
    query = _raw(slack, f"auth.test?token={TOKEN}", headers={})
    assert query["ok"] is True
    assert all("token" not in c.params for c in slack.calls)


def test_every_answer_to_a_known_token_carries_its_scopes(slack: SlackTestServer) -> None:
    slack.add_token("xoxb-narrow", scopes={"users:read", "channels:read"})
    narrow = WebClient(token="xoxb-narrow", base_url=slack.api_url)
    answer = narrow.auth_test()
    assert answer.headers["x-oauth-scopes"] == "channels:read,users:read"
    with pytest.raises(SlackApiError) as exc:
        narrow.usergroups_list()
    assert exc.value.response.headers["x-oauth-scopes"] == "channels:read,users:read"
    with pytest.raises(SlackApiError) as unknown:
        WebClient(token="xoxb-unknown", base_url=slack.api_url).auth_test()
    assert "x-oauth-scopes" not in unknown.value.response.headers


def test_missing_scope_reports_needed_and_provided(slack: SlackTestServer) -> None:
    slack.add_token("xoxb-narrow", scopes={"users:read", "channels:read"})
    narrow = WebClient(token="xoxb-narrow", base_url=slack.api_url)
    with pytest.raises(SlackApiError) as exc:
        narrow.usergroups_list()
    assert exc.value.response.data == {
        "ok": False,
        "error": "missing_scope",
        "needed": "usergroups:read",
        "provided": "channels:read,users:read",
    }
    with pytest.raises(SlackApiError) as exc:
        narrow.usergroups_create(name="x")
    assert exc.value.response["needed"] == "usergroups:write"
    with pytest.raises(SlackApiError) as exc:
        narrow.users_lookupByEmail(email="a@example.com")
    assert exc.value.response["needed"] == "users:read.email"


def test_unknown_method(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as exc:
        client.api_call("usergroups.destroy")
    assert _error(exc) == "unknown_method"


# ---------------------------------------------------------------------------- users and channels


def test_users_list_paginates_450_users_in_three_pages(slack: SlackTestServer, client: WebClient) -> None:
    ids = [slack.add_user(f"user{i}@example.com") for i in range(450)]
    # SlackResponse follows next_cursor when iterated; it reuses one object, so copy each page's data.
    pages = [dict(page.data) for page in client.users_list(limit=200)]
    assert [len(p["members"]) for p in pages] == [200, 200, 50]
    assert [m["id"] for p in pages for m in p["members"]] == ids
    assert pages[0]["response_metadata"]["next_cursor"]
    assert pages[-1]["response_metadata"]["next_cursor"] == ""
    assert slack.calls_to("users.list") == 3
    assert slack.calls[1].params["cursor"] == pages[0]["response_metadata"]["next_cursor"]
    assert slack.calls[2].params["limit"] == "200"


def test_page_size_is_capped_and_bad_cursor_rejected(slack: SlackTestServer, client: WebClient) -> None:
    for i in range(250):
        slack.add_user(f"u{i}@example.com")
    assert len(client.users_list(limit=1000)["members"]) == 200
    slack.page_limit_cap = 50
    assert len(client.users_list(limit=1000)["members"]) == 50
    with pytest.raises(SlackApiError) as exc:
        client.users_list(cursor="bm9wZQ==")
    assert _error(exc) == "invalid_cursor"
    with pytest.raises(SlackApiError) as exc:
        client.users_list(limit="lots")  # type: ignore[arg-type]
    assert _error(exc) == "invalid_limit"


def test_users_list_member_shape_and_email_scope(slack: SlackTestServer, client: WebClient) -> None:
    uid = slack.add_user("ann@example.com", name="ann")
    slack.add_user("bot@example.com", is_bot=True)
    slack.add_user("old@example.com", deleted=True)
    members = client.users_list()["members"]
    assert members[0] == {
        "id": uid,
        "team_id": "T0001",
        "name": "ann",
        "deleted": False,
        "real_name": "ann",
        "is_bot": False,
        "is_app_user": False,
        "is_restricted": False,
        "is_ultra_restricted": False,
        "profile": {
            "real_name": "ann",
            "real_name_normalized": "ann",
            "display_name": "ann",
            "display_name_normalized": "ann",
            "email": "ann@example.com",
        },
    }
    assert [(m["is_bot"], m["deleted"]) for m in members[1:]] == [(True, False), (False, True)]
    slack.add_token("xoxb-noemail", scopes=DEFAULT_SCOPES - {"users:read.email"})
    no_email = WebClient(token="xoxb-noemail", base_url=slack.api_url).users_list()["members"]
    assert all("email" not in m["profile"] for m in no_email)


def test_lookup_by_email(slack: SlackTestServer, client: WebClient) -> None:
    uid = slack.add_user("Bob@Example.com")
    slack.add_user("gone@example.com", deleted=True)
    assert client.users_lookupByEmail(email="bob@example.com")["user"]["id"] == uid
    for email in ("nobody@example.com", "gone@example.com"):  # deactivated -> users_not_found (documented)
        with pytest.raises(SlackApiError) as exc:
            client.users_lookupByEmail(email=email)
        assert _error(exc) == "users_not_found"


def test_conversations_list_types_and_private_scope(slack: SlackTestServer, client: WebClient) -> None:
    pub = slack.add_channel("general")
    old = slack.add_channel("old", is_archived=True)
    priv = slack.add_channel("secret", is_private=True)
    assert [c["id"] for c in client.conversations_list()["channels"]] == [pub, old]
    assert [c["id"] for c in client.conversations_list(exclude_archived=True)["channels"]] == [pub]
    both = client.conversations_list(types="public_channel,private_channel")["channels"]
    assert [(c["id"], c["is_private"]) for c in both] == [(pub, False), (old, False), (priv, True)]
    slack.add_token("xoxb-public", scopes={"channels:read"})
    public_only = WebClient(token="xoxb-public", base_url=slack.api_url)
    assert len(public_only.conversations_list()["channels"]) == 2
    with pytest.raises(SlackApiError) as exc:
        public_only.conversations_list(types="private_channel")
    assert exc.value.response["needed"] == "groups:read"
    with pytest.raises(SlackApiError) as exc:
        client.conversations_list(types="nonsense")
    assert _error(exc) == "invalid_types"


def test_conversations_list_paginates(slack: SlackTestServer, client: WebClient) -> None:
    for i in range(120):
        slack.add_channel(f"c{i}")
    sizes = [len(page["channels"]) for page in client.conversations_list()]  # documented default limit 100
    assert sizes == [100, 20]


# ---------------------------------------------------------------------------- user groups


def test_create_update_users_update_round_trip(slack: SlackTestServer, client: WebClient) -> None:
    alice, bob = slack.add_user("alice@example.com"), slack.add_user("bob@example.com")
    chan = slack.add_channel("team-room")
    created = client.usergroups_create(name="Platform", handle="platform", description="d", channels=[chan])
    group = created["usergroup"]
    assert group["id"] == "S0001"
    assert (group["name"], group["handle"], group["description"]) == ("Platform", "platform", "d")
    assert group["prefs"]["channels"] == [chan]
    assert group["date_delete"] == 0
    assert slack.usergroup("platform")["users"] == []

    updated = client.usergroups_update(usergroup=group["id"], name="Platform Team", channels=[])["usergroup"]
    assert updated["name"] == "Platform Team"
    assert updated["prefs"]["channels"] == []
    assert updated["date_update"] > group["date_update"]

    members = client.usergroups_users_update(usergroup=group["id"], users=[alice, bob], include_count=True)
    assert members["usergroup"]["users"] == [alice, bob]
    assert members["usergroup"]["user_count"] == 2
    assert client.usergroups_users_list(usergroup=group["id"])["users"] == [alice, bob]
    state = slack.usergroup("platform")
    assert state["users"] == [alice, bob]
    assert state["updated_by"] == client.auth_test()["user_id"]
    assert [c.method for c in slack.write_calls()] == [
        "usergroups.create",
        "usergroups.update",
        "usergroups.users.update",
    ]
    assert slack.write_calls()[2].params["users"] == f"{alice},{bob}"


def test_create_errors(slack: SlackTestServer, client: WebClient) -> None:
    slack.add_user("taken@example.com", name="taken-user")
    slack.add_usergroup("ops", name="Ops", disabled=True)  # disabled groups still own name and handle
    cases = [
        ({"name": "Ops", "handle": "ops2"}, "name_already_exists"),
        ({"name": "Ops 2", "handle": "OPS"}, "handle_already_exists"),
        ({"name": "Users", "handle": "taken-user"}, "handle_already_exists"),
        ({"name": "Chan", "handle": "chan", "channels": "C9999"}, "invalid_channel_provided"),
        ({"name": " "}, "missing_subteam_name"),
    ]
    for kwargs, expected in cases:
        with pytest.raises(SlackApiError) as exc:
            client.usergroups_create(**kwargs)  # type: ignore[arg-type]
        assert _error(exc) == expected, kwargs
    assert slack.write_calls() == []
    assert len(slack.usergroups()) == 1


def test_update_errors(slack: SlackTestServer, client: WebClient) -> None:
    slack.add_usergroup("a", name="A")
    b = slack.add_usergroup("b", name="B")
    cases = [
        ({"usergroup": "S9999", "name": "X"}, "no_such_subteam"),
        ({"usergroup": b, "name": "A"}, "name_already_exists"),
        ({"usergroup": b, "handle": "a"}, "handle_already_exists"),
        ({"usergroup": b, "channels": "C404"}, "invalid_channel_provided"),
    ]
    for kwargs, expected in cases:
        with pytest.raises(SlackApiError) as exc:
            client.usergroups_update(**kwargs)  # type: ignore[arg-type]
        assert _error(exc) == expected, kwargs
    own_handle = client.usergroups_update(usergroup=b, handle="b")  # keeping its own handle is fine
    assert own_handle["usergroup"]["handle"] == "b"


def test_users_update_errors(slack: SlackTestServer, client: WebClient) -> None:
    alice = slack.add_user("alice@example.com")
    gone = slack.add_user("gone@example.com", deleted=True)
    bot = slack.add_user("bot@example.com", is_bot=True)
    group = slack.add_usergroup("g", name="G", users=[alice])
    cases = [
        ({"usergroup": group, "users": []}, "no_users_provided"),
        ({"usergroup": group, "users": ""}, "no_users_provided"),
        ({"usergroup": group, "users": [alice, "U9999"]}, "invalid_users"),
        ({"usergroup": group, "users": [gone]}, "invalid_users"),
        ({"usergroup": group, "users": [bot]}, "invalid_user"),
        ({"usergroup": "S9999", "users": [alice]}, "no_such_subteam"),
    ]
    for kwargs, expected in cases:
        with pytest.raises(SlackApiError) as exc:
            client.usergroups_users_update(**kwargs)  # type: ignore[arg-type]
        assert _error(exc) == expected, kwargs
    assert slack.usergroup("g")["users"] == [alice]
    assert slack.write_calls() == []


def test_users_update_with_json_body(slack: SlackTestServer, client: WebClient) -> None:
    alice, bob = slack.add_user("alice@example.com"), slack.add_user("bob@example.com")
    group = slack.add_usergroup("g", name="G")
    resp = client.api_call("usergroups.users.update", json={"usergroup": group, "users": [alice, bob]})
    assert resp["usergroup"]["users"] == [alice, bob]


def test_disable_enable_and_list_filters(slack: SlackTestServer, client: WebClient) -> None:
    alice = slack.add_user("alice@example.com")
    group = slack.add_usergroup("g", name="G", users=[alice])
    before = slack.usergroup("g")

    disabled = client.usergroups_disable(usergroup=group)["usergroup"]
    assert disabled["date_delete"] != 0
    assert disabled["date_update"] > before["date_update"]
    assert client.usergroups_list()["usergroups"] == []
    listed = client.usergroups_list(include_disabled=True, include_users=True, include_count=True)
    assert [(g["id"], g["users"], g["user_count"]) for g in listed["usergroups"]] == [(group, [alice], 1)]
    with pytest.raises(SlackApiError) as exc:
        client.usergroups_users_list(usergroup=group)
    assert _error(exc) == "no_such_subteam"
    assert client.usergroups_users_list(usergroup=group, include_disabled=True)["users"] == [alice]

    enabled = client.usergroups_enable(usergroup=group)["usergroup"]
    assert enabled["date_delete"] == 0
    assert enabled["date_update"] > disabled["date_update"]
    plain = client.usergroups_list()["usergroups"]
    assert [g["id"] for g in plain] == [group]
    assert "users" not in plain[0] and "user_count" not in plain[0]
    with pytest.raises(SlackApiError) as exc:
        client.usergroups_enable(usergroup="S9999")
    assert _error(exc) == "no_such_subteam"
    assert [c.method for c in slack.write_calls()] == ["usergroups.disable", "usergroups.enable"]


def test_state_helpers(slack: SlackTestServer) -> None:
    alice = slack.add_user("alice@example.com")
    chan = slack.add_channel("room")
    group = slack.add_usergroup("h", name="H", users=[alice], channels=[chan], disabled=True)
    state = slack.usergroup("h")
    assert (state["id"], state["users"], state["prefs"]["channels"]) == (group, [alice], [chan])
    assert state["date_delete"] != 0
    assert slack.usergroups() == [state]
    with pytest.raises(KeyError):
        slack.usergroup("missing")
    with pytest.raises(ValueError, match="unknown ids"):
        slack.add_usergroup("x", name="X", users=["U9999"])
    assert slack.calls == []


# ---------------------------------------------------------------------------- faults, log, concurrency


def test_rate_limit_retried_by_sdk_handler(slack: SlackTestServer) -> None:
    slack.add_user("a@example.com")
    slack.rate_limit("users.list", times=2, retry_after=0)
    client = WebClient(
        token=TOKEN, base_url=slack.api_url, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=3)]
    )
    assert len(client.users_list()["members"]) == 1
    assert slack.calls_to("users.list") == 3
    expected = [(429, "ratelimited"), (429, "ratelimited"), (200, None)]
    assert [(c.status, c.error) for c in slack.calls] == expected


def test_rate_limit_without_retry_exposes_retry_after(slack: SlackTestServer, client: WebClient) -> None:
    slack.rate_limit(None, times=1, retry_after=7)
    with pytest.raises(SlackApiError) as exc:
        client.auth_test()
    assert exc.value.response.status_code == 429
    assert exc.value.response.headers["Retry-After"] == "7"
    assert _error(exc) == "ratelimited"
    assert client.auth_test()["ok"]  # the fault is used up


def test_server_errors_retried_by_sdk_handler(slack: SlackTestServer) -> None:
    slack.fail("usergroups.list", times=2, status=503)
    handler = ServerErrorRetryHandler(
        max_retry_count=2, interval_calculator=FixedValueRetryIntervalCalculator(fixed_internal=0.01)
    )
    client = WebClient(token=TOKEN, base_url=slack.api_url, retry_handlers=[handler])
    assert client.usergroups_list()["usergroups"] == []
    assert [c.status for c in slack.calls] == [503, 503, 200]
    slack.fail(None, times=1)
    with pytest.raises(SlackApiError) as exc:
        WebClient(token=TOKEN, base_url=slack.api_url).auth_test()
    assert exc.value.response.status_code == 500


def test_reset_calls_and_latency(slack: SlackTestServer, client: WebClient) -> None:
    client.auth_test()
    slack.reset_calls()
    assert slack.calls == []
    slack.latency = 0.05
    started = time.perf_counter()
    client.auth_test()
    assert time.perf_counter() - started >= 0.05


def test_concurrent_writes_are_serialised(slack: SlackTestServer) -> None:
    users = [slack.add_user(f"u{i}@example.com") for i in range(8)]
    group = slack.add_usergroup("g", name="G")
    client = WebClient(token=TOKEN, base_url=slack.api_url)
    errors: list[BaseException] = []

    def write(uid: str) -> None:
        try:
            client.usergroups_users_update(usergroup=group, users=[uid])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(slack.write_calls()) == 8
    assert slack.usergroup("g")["users"][0] in users


# ---------------------------------------------------------------------------- standalone process


def test_runs_as_a_process_with_seed_file(tmp_path: Path) -> None:
    seed = {
        "tokens": [TOKEN],
        "users": [{"email": "a@example.com"}, "b@example.com"],
        "channels": ["room"],
        "usergroups": [{"handle": "g", "name": "G", "users": ["a@example.com"], "channels": ["room"]}],
    }
    seed_file = tmp_path / "state.json"
    seed_file.write_text(json.dumps(seed))
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler_testing.slack", "--port", "0", "--seed-file", str(seed_file)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        api_url = proc.stdout.readline().strip()
        client = WebClient(token=TOKEN, base_url=api_url)
        groups = client.usergroups_list(include_users=True)["usergroups"]
        seeded = [(g["handle"], g["users"], g["prefs"]["channels"]) for g in groups]
        assert seeded == [("g", ["U0001"], ["C0001"])]
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0
