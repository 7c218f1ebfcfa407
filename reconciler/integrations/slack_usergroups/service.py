"""Slack user groups: observe (client), plan (planner), apply (client), for one spec and one token."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

from pydantic import SecretStr

from reconciler.errors import PermanentError, ReconcileError
from reconciler.fleet import CACHE_ERRORS, Fleet
from reconciler.integrations.base import IntegrationService, RunOutcome
from reconciler.integrations.common import name_list
from reconciler.integrations.slack_usergroups import planner
from reconciler.integrations.slack_usergroups.client import SlackClient
from reconciler.integrations.slack_usergroups.models import (
    AddUsers,
    CreateUsergroup,
    DisableUsergroup,
    EnableUsergroup,
    RemoveUsers,
    SlackState,
    SlackUser,
    SlackUsergroupsSpec,
    SlackUsergroupState,
    UpdateUsergroup,
    slack_usergroup_target,
)
from reconciler.integrations.slack_usergroups.shared import SlackWorkspaceCache
from reconciler.models.base import Action
from reconciler.models.target import Target
from reconciler.settings import Settings

log = logging.getLogger(__name__)

_METHODS: dict[type[Action], str] = {
    CreateUsergroup: "usergroups.create",
    EnableUsergroup: "usergroups.enable",
    UpdateUsergroup: "usergroups.update",
    AddUsers: "usergroups.users.update",
    RemoveUsers: "usergroups.users.update",
    DisableUsergroup: "usergroups.disable",
}
"""The Slack method that applies each action (`apply_one`), for its budget token."""


class SlackUsergroupsService(IntegrationService):
    def __init__(
        self, spec: SlackUsergroupsSpec, client: SlackClient, shared: SlackWorkspaceCache | None = None
    ) -> None:
        self.spec = spec
        self.client = client
        self.shared = shared
        self._ids: dict[str, str] = {}
        self._states: dict[str, SlackUsergroupState] = {}
        self._users_set: set[str] = set()
        """Groups whose user list this apply has set (one call sets the whole list)."""

    @classmethod
    def create(
        cls, spec: SlackUsergroupsSpec, token: SecretStr, settings: Settings, fleet: Fleet | None = None
    ) -> SlackUsergroupsService:
        client = SlackClient(token, str(spec.api_url), settings, fleet)
        return cls(spec, client, SlackWorkspaceCache(fleet, client) if fleet is not None else None)

    def plan(self) -> list[Action]:
        """Read usergroups once, and users/channels once each only when the spec names any.

        Channels are also read when a managed group has some, so a plan removing them names them.
        """
        if self.shared is not None:
            try:
                return self._plan_shared(self.shared)
            except CACHE_ERRORS:
                log.warning("Valkey is unreachable: this run reads Slack itself, without the shared cache")
                self.shared = None
                self.client.go_alone()
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

    def queue_plan_reads(self) -> None:
        if self.shared is not None:
            self.shared.queue_plan_reads(*self._plan_reads())

    def _plan_reads(self) -> tuple[list[str], list[str], set[str]]:
        """The user groups, names and users' e-mails the plan reads first from the shared cache."""
        return (
            [g.handle for g in self.spec.usergroups],
            [g.name for g in self.spec.usergroups if g.name is not None],
            {e for g in self.spec.usergroups for e in g.users},
        )

    def _plan_shared(self, shared: SlackWorkspaceCache) -> list[Action]:
        """The same plan from the workspace's shared reads (see shared.py for how fresh they are)."""
        handles, group_names, emails = self._plan_reads()
        groups, entries = shared.read_for_plan(handles, group_names, emails)
        managed = [g for g in groups if g.handle in set(handles)]
        # A new group is created before its users are set: re-check users not read lately.
        new = {g.handle for g in self.spec.usergroups} - {g.handle for g in managed}
        recheck_before = time.time() - shared.fleet.settings.directory_recheck_seconds
        stale = {
            e
            for g in self.spec.usergroups
            if g.handle in new
            for e in g.users
            if e in entries and entries[e].read_at < recheck_before
        }
        if stale:
            for email in stale:
                entries.pop(email)
            entries.update(shared.look_up(sorted(stale)))
        users = [entry.user for entry in entries.values()]
        known = {u.id for u in users}
        members = {uid for g in managed for uid in g.users} - known
        users += [SlackUser(id=i, email=e) for i, e in shared.emails_of(members).items() if e not in emails]
        names = {c for g in self.spec.usergroups for c in g.channels or ()}
        with_channels = {g.handle for g in self.spec.usergroups if g.channels is not None}
        channel_ids = {c for g in managed if g.handle in with_channels for c in g.channels}
        channels = shared.channels(sorted(names), sorted(channel_ids)) if names or channel_ids else {}
        state = SlackState(usergroups=tuple(groups), users=tuple(users), channels=channels)
        self._ids = {g.handle: g.id for g in groups}
        self._states = {g.handle: g for g in managed}
        return list(planner.plan(self.spec.usergroups, state))

    def targets(self) -> list[Target]:
        team_id = self.client.team_id()
        return [slack_usergroup_target(team_id, g.handle) for g in self.spec.usergroups]

    def exclude(self, names: Collection[str]) -> None:
        kept = [g for g in self.spec.usergroups if g.handle not in names]
        self.spec = self.spec.model_copy(update={"usergroups": kept})

    def plan_teardown(self) -> list[Action]:
        handles = [g.handle for g in self.spec.usergroups]
        if not handles:
            return []
        groups = self.client.list_usergroups(managed=handles)
        self._ids = {g.handle: g.id for g in groups}
        self._states = {g.handle: g for g in groups if g.handle in set(handles)}
        return list(planner.plan_teardown(handles, groups))

    def queue_first_call(self, actions: list[Action]) -> None:
        if self.shared is not None and actions:
            self.client.queue_token(_METHODS[type(actions[0])])

    def apply(self, outcome: RunOutcome) -> None:
        self._users_set = set()
        try:
            super().apply(outcome)
        finally:
            if self.shared is not None:  # the last write-throughs, before the run's final save
                self.shared.send_writes()

    def after_apply(self, action: Action, error: ReconcileError | None) -> None:
        if error is None:
            self._write_through(action)

    def _write_through(self, action: Action) -> None:
        """Tell the workspace's snapshot what we just changed, so no stale read hides it."""
        if self.shared is None:
            return
        handle = action.target
        state = self._states.get(handle)
        match action:
            case CreateUsergroup():
                state = SlackUsergroupState(
                    id=self._ids[handle],
                    handle=handle,
                    name=action.name,
                    description=action.description,
                    channels=frozenset(action.channel_ids),
                )
            case EnableUsergroup() | DisableUsergroup() if state is not None:
                state = state.model_copy(update={"enabled": isinstance(action, EnableUsergroup)})
            case UpdateUsergroup() if state is not None:
                changes: dict[str, object] = {}
                if action.name is not None:
                    changes["name"] = action.name
                if action.description is not None:
                    changes["description"] = action.description
                if action.channel_ids is not None:
                    changes["channels"] = frozenset(action.channel_ids)
                state = state.model_copy(update=changes)
            case AddUsers() | RemoveUsers() if state is not None:
                state = state.model_copy(update={"users": frozenset(action.user_ids)})
            case _:
                return
        self._states[handle] = state
        try:
            self.shared.record_write(state)
        except CACHE_ERRORS:
            log.warning("Valkey is unreachable: the shared snapshot learns of %s at its next read", handle)

    def apply_one(self, action: Action) -> None:
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
                if handle not in self._users_set:
                    self._set_users(action)
                    self._users_set.add(handle)
            case DisableUsergroup():
                self.client.disable(self._id(handle))
            case _:
                raise TypeError(f"not a Slack action: {action.type}")

    def _set_users(self, action: AddUsers | RemoveUsers) -> None:
        """Slack refuses deactivated users (`invalid_users`): a cached directory may not have known
        yet. Then look the group's users up again, remember the answer, and name them."""
        try:
            self.client.set_users(self._id(action.target), action.user_ids)
        except PermanentError as exc:
            if self.shared is None or not exc.message.endswith("invalid_users"):
                raise
            group = next(g for g in self.spec.usergroups if g.handle == action.target)
            found = self.shared.look_up(group.users)
            gone = [e for e in group.users if e not in found or found[e].user.deleted]
            if not gone:
                raise
            raise PermanentError(
                "UnknownUsers",
                f"no active Slack user has the e-mail {name_list(gone)} (deactivated or removed). "
                "Fix spec.slackUsergroups.usergroups[].users.",
            ) from None

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
