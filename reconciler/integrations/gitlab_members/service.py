"""GitLab members: observe (client), plan (planner), apply (client), for one spec and one token."""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, date, datetime

from pydantic import SecretStr

from reconciler.errors import RateLimited, ReconcileError
from reconciler.fleet import CACHE_ERRORS, Fleet
from reconciler.integrations.base import IntegrationService, RunOutcome
from reconciler.integrations.gitlab_members import planner
from reconciler.integrations.gitlab_members.client import GitlabClient
from reconciler.integrations.gitlab_members.models import (
    AddMember,
    GitlabMembership,
    GitlabMembersSpec,
    GitlabMemberState,
    GitlabSourceState,
    GitlabState,
    GitlabUser,
    RemoveMember,
    SourceKind,
    UpdateMember,
    gitlab_target,
)
from reconciler.integrations.gitlab_members.shared import GitlabInstanceCache
from reconciler.models.base import Action
from reconciler.models.target import Target
from reconciler.settings import Settings

log = logging.getLogger(__name__)


class GitlabMembersService(IntegrationService):
    """One run: one client for (spec.url, token), users looked up at most once each."""

    def __init__(
        self, spec: GitlabMembersSpec, client: GitlabClient, shared: GitlabInstanceCache | None = None
    ) -> None:
        self.spec = spec
        self.client = client
        self.shared = shared
        """What the instance's runs share in Valkey: own user, member listings, directory (None: no
        fleet, or Valkey failed)."""
        self._users: dict[str, GitlabUser | None] = {}
        """Run-wide cache of username lookups (case-folded username -> user, None: no such user)."""
        self._observed: dict[tuple[SourceKind, str], dict[int, GitlabMemberState]] = {}
        """Direct members as this run observed them (for the state of a member written through)."""

    @classmethod
    def create(
        cls, spec: GitlabMembersSpec, token: SecretStr, settings: Settings, fleet: Fleet | None = None
    ) -> GitlabMembersService:
        client = GitlabClient(str(spec.url), token, settings, fleet)
        return cls(spec, client, GitlabInstanceCache(fleet, client) if fleet is not None else None)

    def plan(self) -> list[Action]:
        """Reads: GET /user, one paginated direct-member listing per group/project, and one user
        lookup per desired username that is not a direct member of any listed group/project."""
        own_user = self._own_user()
        groups = {g.path: self._observe("group", g) for g in self.spec.groups}
        projects = {p.path: self._observe("project", p) for p in self.spec.projects}
        found = [*groups.values(), *projects.values()]
        if all(state is not None for state in found):
            known = {own_user.username.casefold()}
            known.update(m.username.casefold() for state in found if state for m in state.members)
            missing = {
                member.username
                for membership in (*self.spec.groups, *self.spec.projects)
                for member in membership.members
                if member.username.casefold() not in known and member.username.casefold() not in self._users
            }
            self._users.update(self._look_up(missing))
        # else: the planner reports the missing groups/projects; looking users up would be wasted calls
        state = GitlabState(own_user=own_user, groups=groups, projects=projects, users=dict(self._users))
        return list(planner.plan(self.spec, state, today=_today()))

    def _look_up(self, usernames: Collection[str]) -> dict[str, GitlabUser | None]:
        """From the instance's shared directory when there is one, else one lookup per username."""
        if self.shared is not None:
            try:
                return self.shared.users(usernames)
            except CACHE_ERRORS:
                self._go_alone()
        return {name.casefold(): self.client.find_user(name) for name in sorted(usernames)}

    def _own_user(self) -> GitlabUser:
        if self.shared is not None:
            try:
                return self.shared.own_user()
            except CACHE_ERRORS:
                self._go_alone()
        return self.client.current_user()

    def _go_alone(self) -> None:
        log.warning("Valkey is unreachable: this run reads GitLab itself, without the shared cache")
        self.shared = None

    def targets(self) -> list[Target]:
        url = str(self.spec.url)
        return [gitlab_target(url, "group", g.path) for g in self.spec.groups] + [
            gitlab_target(url, "project", p.path) for p in self.spec.projects
        ]

    def exclude(self, names: Collection[str]) -> None:
        groups = [g for g in self.spec.groups if f"group:{g.path}" not in names]
        projects = [p for p in self.spec.projects if f"project:{p.path}" not in names]
        self.spec = self.spec.model_copy(update={"groups": groups, "projects": projects})

    def plan_teardown(self) -> list[Action]:
        """Reads: GET /user and one direct-member listing per group/project still listed."""
        if not self.spec.groups and not self.spec.projects:
            return []
        own_user = self._own_user()
        state = GitlabState(
            own_user=own_user,
            groups={g.path: self._observe("group", g) for g in self.spec.groups},
            projects={p.path: self._observe("project", p) for p in self.spec.projects},
        )
        return list(planner.plan_teardown(self.spec, state))

    def close(self) -> None:
        self.client.close()

    def identity(self) -> str:
        return f"GitLab user {self.client.current_user().username} at {self.client.url}"

    def granted_scopes(self) -> frozenset[str] | None:
        if self.shared is not None:
            try:
                return self.shared.token_scopes()
            except CACHE_ERRORS:
                self._go_alone()
        return self.client.token_scopes()

    def apply(self, outcome: RunOutcome) -> None:
        shared = self.shared  # a failed `forget` drops it; what was queued before still goes
        try:
            super().apply(outcome)
        finally:
            if shared is not None:  # the last write-throughs, before the run's final save
                shared.send_writes()

    def after_apply(self, action: Action, error: ReconcileError | None) -> None:
        if error is None:
            self._write_through(action)
        elif not isinstance(error, RateLimited):  # rate limited: never sent, the listing stays right
            self._forget(action)

    def _observe(self, kind: SourceKind, membership: GitlabMembership) -> GitlabSourceState | None:
        members: list[GitlabMemberState] | None = None
        if self.shared is not None:
            try:
                members = self.shared.members(kind, membership.path)
            except CACHE_ERRORS:
                self._go_alone()
        if self.shared is None:
            members = self.client.list_members(kind, membership.path)
        if members is None:
            return None
        self._observed[(kind, membership.path)] = {m.id: m for m in members}
        return GitlabSourceState(kind=kind, path=membership.path, members=tuple(members))

    def _write_through(self, action: Action) -> None:
        """Our own change into the shared listing, so that no listing read before it hides it
        (queued: it rides with the run's next round trip, see `apply`)."""
        if self.shared is None or not isinstance(action, AddMember | UpdateMember | RemoveMember):
            return
        member: GitlabMemberState | None = None
        if not isinstance(action, RemoveMember):
            old = self._observed.get((action.kind, action.target), {}).get(action.user_id)
            member = GitlabMemberState(
                id=action.user_id,
                username=action.username,
                state=old.state if old else "active",
                access_level=action.access_level,
                expires_at=action.expires_at,
            )
        self.shared.record_write(action.kind, action.target, action.user_id, member)

    def _forget(self, action: Action) -> None:
        """A write failed or its outcome is unknown: the next run lists that group or project again."""
        if self.shared is None or not isinstance(action, AddMember | UpdateMember | RemoveMember):
            return
        try:
            self.shared.forget(action.kind, action.target)
        except CACHE_ERRORS:
            self._go_alone()

    def apply_one(self, action: Action) -> None:
        match action:
            case AddMember():
                self.client.add_member(
                    action.kind,
                    action.target,
                    action.user_id,
                    action.username,
                    action.access_level,
                    action.expires_at,
                )
            case UpdateMember():
                self.client.update_member(
                    action.kind,
                    action.target,
                    action.user_id,
                    action.username,
                    action.access_level,
                    action.expires_at,
                    set_expiry=action.expires_at != action.old_expires_at,
                )
            case RemoveMember():
                self.client.remove_member(action.kind, action.target, action.user_id, action.username)
            case _:
                raise TypeError(f"not a GitLab members action: {action.type}")


def _today() -> date:
    return datetime.now(UTC).date()
