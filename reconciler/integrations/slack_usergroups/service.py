"""Slack user groups: observe (client), plan (planner), apply (client), for one spec and one token."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from reconciler.errors import ReconcileError
from reconciler.integrations.base import ApplyResult, IntegrationService
from reconciler.integrations.slack_usergroups import planner
from reconciler.integrations.slack_usergroups.client import SlackClient
from reconciler.integrations.slack_usergroups.models import (
    AddUsers,
    CreateUsergroup,
    DisableUsergroup,
    EnableUsergroup,
    RemoveUsers,
    SlackState,
    SlackUsergroupsSpec,
    UpdateUsergroup,
)
from reconciler.models.base import Action

log = logging.getLogger(__name__)


class SlackUsergroupsService(IntegrationService):
    def __init__(self, spec: SlackUsergroupsSpec, client: SlackClient) -> None:
        self.spec = spec
        self.client = client
        self._ids: dict[str, str] = {}

    def plan(self) -> list[Action]:
        """Read usergroups once, and users/channels once each only when the spec names any.

        Channels are also read when a managed group has some, so a plan removing them names them.
        """
        groups = self.client.list_usergroups(managed=[g.handle for g in self.spec.usergroups])
        clearing = {g.handle for g in self.spec.usergroups if g.channels == []}
        wants_users = any(g.users for g in self.spec.usergroups)
        wants_channels = any(g.channels for g in self.spec.usergroups) or any(
            g.channels for g in groups if g.handle in clearing
        )
        state = SlackState(
            usergroups=tuple(groups),
            users=tuple(self.client.list_users()) if wants_users else (),
            channels=self.client.list_channels() if wants_channels else {},
        )
        self._ids = {g.handle: g.id for g in groups}
        return list(planner.plan(self.spec.usergroups, state))

    def identity(self) -> str:
        return f"a token of Slack workspace {self.client.team_id()}"

    def granted_scopes(self) -> frozenset[str] | None:
        return self.client.scopes

    def apply(self, actions: Sequence[Action]) -> ApplyResult:
        result = ApplyResult()
        users_set: set[str] = set()
        for action in actions:
            try:
                self._apply_one(action, users_set)
            except ReconcileError as exc:
                result.failed, result.error = action, exc
                return result
            result.applied.append(action)
        return result

    def _apply_one(self, action: Action, users_set: set[str]) -> None:
        handle = action.target
        match action:
            case CreateUsergroup():
                self._ids[handle] = self._create(action)
            case EnableUsergroup():
                self.client.enable(self._id(handle))
            case UpdateUsergroup():
                self.client.update_usergroup(
                    self._id(handle),
                    name=action.name,
                    description=action.description,
                    channel_ids=action.channel_ids,
                )
            case AddUsers() | RemoveUsers():
                # Slack sets the whole list: one call covers both the additions and the removals.
                if handle not in users_set:
                    self.client.set_users(self._id(handle), action.user_ids)
                    users_set.add(handle)
            case DisableUsergroup():
                self.client.disable(self._id(handle))
            case _:
                raise TypeError(f"not a Slack action: {action.type}")

    def _create(self, action: CreateUsergroup) -> str:
        """Create, or adopt the group if an earlier attempt created it but its answer was lost."""
        try:
            return self.client.create_usergroup(
                action.target, action.name, action.description, action.channel_ids
            )
        except ReconcileError as exc:
            if exc.reason != "Conflict":
                raise
            existing = {g.handle: g for g in self.client.list_usergroups(managed=[action.target])}
            if action.target not in existing:
                raise
            log.info(
                "usergroup %s already exists (an earlier attempt created it); adopting it", action.target
            )
            return existing[action.target].id

    def _id(self, handle: str) -> str:
        return self._ids[handle]
