"""Naive per-user implementations of the same plans as the real integrations: the P2 baseline.

They are what a first version written straight from the API docs tends to be: look every user up
one by one, read each group's members separately, and write once per changed user. They apply the
same changes as the real services (P2 checks the final states are identical), only with more calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from slack_sdk import WebClient


@dataclass
class SlackGroupSpec:
    handle: str
    users: list[str]  # e-mails


def naive_slack(api_url: str, token: str, groups: list[SlackGroupSpec]) -> None:
    """usergroups.list once (handle -> id), then per group: usergroups.users.list, users.lookupByEmail
    per desired user, and one usergroups.users.update per added or removed user."""
    web = WebClient(token=token, base_url=api_url)
    ids = {g["handle"]: g["id"] for g in web.usergroups_list(include_disabled=True)["usergroups"]}
    for group in groups:
        group_id = ids[group.handle]
        members = list(web.usergroups_users_list(usergroup=group_id)["users"])
        desired = [web.users_lookupByEmail(email=email)["user"]["id"] for email in group.users]
        for user_id in desired:
            if user_id not in members:
                members.append(user_id)
                web.usergroups_users_update(usergroup=group_id, users=members)
        for user_id in [m for m in members if m not in desired]:
            members.remove(user_id)
            web.usergroups_users_update(usergroup=group_id, users=members)


@dataclass
class GitlabGroupSpec:
    path: str
    members: dict[str, int]  # username -> access level


def naive_gitlab(url: str, token: str, groups: list[GitlabGroupSpec]) -> None:
    """Per group: per desired member GET /users?username= and GET the membership (404: add it,
    other level: update it); then list the members to remove those not desired."""
    with httpx.Client(
        base_url=url.rstrip("/") + "/api/v4", headers={"PRIVATE-TOKEN": token}, timeout=30
    ) as http:

        def ok(response: httpx.Response) -> Any:
            if response.status_code >= 400 and response.status_code != 404:
                raise RuntimeError(
                    f"{response.request.method} {response.request.url}: {response.status_code} "
                    f"{response.text[:200]}"
                )
            return response.json() if response.content else None

        for group in groups:
            base = f"/groups/{quote(group.path, safe='')}/members"
            desired_ids: set[int] = set()
            for username, level in group.members.items():
                user_id = int(ok(http.get("/users", params={"username": username}))[0]["id"])
                desired_ids.add(user_id)
                member = http.get(f"{base}/{user_id}")
                if member.status_code == 404:
                    ok(http.post(base, data={"user_id": user_id, "access_level": level}))
                elif ok(member)["access_level"] != level:
                    ok(http.put(f"{base}/{user_id}", data={"access_level": level}))
            page = 1
            current: list[dict[str, Any]] = []
            while True:
                batch = ok(http.get(base, params={"per_page": 100, "page": page}))
                current += batch
                if len(batch) < 100:
                    break
                page += 1
            for member in current:
                if member["id"] not in desired_ids:
                    ok(http.delete(f"{base}/{member['id']}", params={"skip_subresources": "true"}))
