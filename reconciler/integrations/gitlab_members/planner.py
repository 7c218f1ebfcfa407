"""Pure planning: desired direct members + what GitLab has now -> ordered actions. No I/O here.

The spec is authoritative for the DIRECT members of each listed group and project: missing members
are added, access level and expiry are changed where they differ, and direct members not listed are
removed. A member's `expiresAt` left out (or null) is not managed: the expiry GitLab has stays; an
empty `expiresAt: ""` clears it. Inherited members are not in the observed state and are never
touched. The token's own user is never removed or demoted.

The plan is all-or-nothing: missing groups/projects (`NotFound`), unknown or blocked users
(`UnknownUsers`), changes GitLab would refuse (`InvalidSpec`: demoting the token's own user, an
expiry in the past, a level below one inherited from a group in the spec) and groups that would be
left without an owner (`OwnerRequired`) raise before any action is returned.

Order: groups (a group's ancestors from the spec first, otherwise spec order), then projects in spec
order; per group/project: adds, updates (promotions first), removals. So an ancestor already has its
final levels when a descendant is written, and a new owner exists before the old one is demoted or
removed (GitLab refuses to drop a group's last owner).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from reconciler.errors import InvalidSpec, PermanentError
from reconciler.integrations.common import name_list
from reconciler.integrations.gitlab_members.models import (
    ACCESS_LEVELS,
    AddMember,
    GitlabAction,
    GitlabMembership,
    GitlabMembersSpec,
    GitlabMemberState,
    GitlabSourceState,
    GitlabState,
    GitlabUser,
    RemoveMember,
    UpdateMember,
    level_name,
)

OWNER = ACCESS_LEVELS["owner"]
NOTHING_CHANGED = "Nothing was changed."


@dataclass
class _Source:
    """One group or project of the spec with its observed direct members."""

    spec: GitlabMembership
    state: GitlabSourceState

    @property
    def key(self) -> str:
        return self.spec.path.casefold()

    def ancestors(self, groups: Sequence[_Source]) -> list[_Source]:
        """Groups of the spec this group/project is inside of, outermost first."""
        found = [g for g in groups if self.key.startswith(g.key + "/")]
        return sorted(found, key=lambda g: g.key.count("/"))


@dataclass
class _Plan:
    actions: list[GitlabAction] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    final_levels: dict[str, dict[int, int]] = field(default_factory=dict)
    """Group key -> user id -> direct access level after the plan (for descendants' checks)."""


def plan(spec: GitlabMembersSpec, current: GitlabState, *, today: date) -> list[GitlabAction]:
    """Return the actions that make GitLab's direct members match `spec`; raise if impossible.

    `today` is the date GitLab checks expiry dates against (UTC).
    """
    groups, projects = _sources(spec, current)
    users = _known_users(current)
    _check_users(spec, users)

    result = _Plan()
    for source in groups:
        _plan_source(source, source.ancestors(groups), users, current.own_user, today, result)
    for source in projects:
        _plan_source(source, source.ancestors(groups), users, current.own_user, today, result)
    if result.problems:
        raise InvalidSpec(" ".join(result.problems) + " " + NOTHING_CHANGED)
    _check_owners(groups, result)
    return result.actions


def plan_teardown(spec: GitlabMembersSpec, current: GitlabState) -> list[GitlabAction]:
    """`deletionPolicy: Delete`: remove the listed members that are direct members now, except the
    token's own user and the last direct owner of a group or project (GitLab refuses that anyway).
    Groups and projects that no longer exist are skipped: there is nothing left to remove."""
    actions: list[GitlabAction] = []
    for memberships, states in ((spec.groups, current.groups), (spec.projects, current.projects)):
        for membership in memberships:
            state = states.get(membership.path)
            if state is None:
                continue
            listed = {m.username.casefold() for m in membership.members}
            owners_left = sum(1 for m in state.members if m.access_level == OWNER)
            for member in state.members:
                if member.username.casefold() not in listed or member.id == current.own_user.id:
                    continue
                if member.access_level == OWNER:
                    if owners_left <= 1:
                        continue
                    owners_left -= 1
                actions.append(
                    RemoveMember(
                        target=membership.path,
                        kind=state.kind,
                        username=member.username,
                        user_id=member.id,
                        access_level=member.access_level,
                    )
                )
    return actions


# --- per group/project ----------------------------------------------------------------------------


def _plan_source(
    source: _Source,
    ancestors: Sequence[_Source],
    users: dict[str, GitlabUser],
    own_user: GitlabUser,
    today: date,
    result: _Plan,
) -> None:
    path, kind = source.spec.path, source.state.kind
    direct = {m.id: m for m in source.state.members}
    final = {m.id: m.access_level for m in source.state.members}
    adds: list[AddMember] = []
    updates: list[UpdateMember] = []
    wanted: set[int] = set()

    for member in source.spec.members:
        user = users[member.username.casefold()]
        level = ACCESS_LEVELS[member.access_level]
        wanted.add(user.id)
        final[user.id] = level
        current = direct.get(user.id)
        if current is None:
            adds.append(
                AddMember(
                    target=path,
                    kind=kind,
                    username=user.username,
                    user_id=user.id,
                    access_level=level,
                    expires_at=member.desired_expiry(None),
                )
            )
        elif level != current.access_level or member.desired_expiry(current.expires_at) != current.expires_at:
            if user.id == own_user.id and level < current.access_level:
                result.problems.append(
                    f"{kind} {path}: {user.username} is the token's own user and is "
                    f"{level_name(current.access_level)}; reconciler never demotes it to "
                    f"{member.access_level} (list it as {level_name(current.access_level)} or leave it out)."
                )
                final[user.id] = current.access_level
                continue
            updates.append(
                UpdateMember(
                    target=path,
                    kind=kind,
                    username=current.username,
                    user_id=user.id,
                    access_level=level,
                    expires_at=member.desired_expiry(current.expires_at),
                    old_access_level=current.access_level,
                    old_expires_at=current.expires_at,
                )
            )

    removals = [
        RemoveMember(target=path, kind=kind, username=m.username, user_id=m.id, access_level=m.access_level)
        for m in source.state.members
        if m.id not in wanted and m.id != own_user.id
    ]
    for removal in removals:
        del final[removal.user_id]

    writes: list[AddMember | UpdateMember] = [*adds, *updates]
    for write in writes:
        _check_write(write, ancestors, today, result)

    updates.sort(key=lambda u: u.access_level <= u.old_access_level)  # promotions first, stable
    result.actions.extend([*adds, *updates, *removals])
    if kind == "group":
        result.final_levels[source.key] = final


def _check_write(
    write: AddMember | UpdateMember, ancestors: Sequence[_Source], today: date, result: _Plan
) -> None:
    """Refuse at planning what GitLab would refuse at apply (HTTP 400), where the plan can see it."""
    where = f"{write.kind} {write.target}"
    expiry_changes = isinstance(write, AddMember) or write.expires_at != write.old_expires_at
    if write.expires_at is not None and expiry_changes and write.expires_at < today:
        result.problems.append(
            f"{where}: expiresAt {write.expires_at} for {write.username} is in the past; "
            "GitLab refuses it (remove the member or the date)."
        )
    for ancestor in ancestors:
        inherited = result.final_levels.get(ancestor.key, {}).get(write.user_id)
        if inherited is not None and inherited > write.access_level:
            result.problems.append(
                f"{where}: {write.username} as {level_name(write.access_level)} is below the "
                f"{level_name(inherited)} membership inherited from group {ancestor.spec.path}; GitLab "
                f"refuses that (raise the level, or leave {write.username} out of {write.target})."
            )


def _check_owners(groups: Sequence[_Source], result: _Plan) -> None:
    """A group that has direct owners keeps at least one (here or in an ancestor group of the spec).

    GitLab refuses to remove or demote a group's last owner (403); a subgroup may rely on the owners
    of its parent, but only a parent that is in the spec is visible here.
    """
    orphaned: list[str] = []
    for source in groups:
        owners = [m.username for m in source.state.members if m.access_level == OWNER]
        if not owners:
            continue
        keeps_owner = any(
            OWNER in result.final_levels.get(g.key, {}).values() for g in (*source.ancestors(groups), source)
        )
        if not keeps_owner:
            orphaned.append(f"group {source.spec.path} (owners now: {name_list(owners)})")
    if orphaned:
        raise PermanentError(
            "OwnerRequired",
            f"{'; '.join(orphaned)} would be left without an owner: list at least one member with "
            f"accessLevel owner (or list its parent group with an owner). {NOTHING_CHANGED}",
        )


# --- inputs ---------------------------------------------------------------------------------------


def _sources(spec: GitlabMembersSpec, current: GitlabState) -> tuple[list[_Source], list[_Source]]:
    """The spec's groups (ancestors first) and projects with their states; NotFound if any is missing."""
    missing = [f"group {g.path}" for g in spec.groups if current.groups.get(g.path) is None]
    missing += [f"project {p.path}" for p in spec.projects if current.projects.get(p.path) is None]
    if missing:
        raise PermanentError(
            "NotFound",
            f"GitLab has no {name_list(missing, sort=False)} (or the token's user cannot see it). "
            f"Fix spec.gitlabMembers; {NOTHING_CHANGED.lower()}",
        )
    groups = [_Source(g, state) for g in spec.groups if (state := current.groups[g.path]) is not None]
    projects = [_Source(p, state) for p in spec.projects if (state := current.projects[p.path]) is not None]
    return _ancestors_first(groups), projects


def _ancestors_first(groups: Sequence[_Source]) -> list[_Source]:
    ordered: list[_Source] = []
    seen: set[str] = set()
    for group in groups:
        for item in (*group.ancestors(groups), group):
            if item.key not in seen:
                seen.add(item.key)
                ordered.append(item)
    return ordered


def _known_users(current: GitlabState) -> dict[str, GitlabUser]:
    """Case-folded username -> user, from the member lists, the lookups and the token's user."""
    users: dict[str, GitlabUser] = {current.own_user.username.casefold(): current.own_user}
    states = [*current.groups.values(), *current.projects.values()]
    for state in states:
        for member in state.members if state is not None else ():
            users.setdefault(member.username.casefold(), _as_user(member))
    for key, user in current.users.items():
        if user is not None:
            users.setdefault(key, user)
    return users


def _as_user(member: GitlabMemberState) -> GitlabUser:
    return GitlabUser(id=member.id, username=member.username, state=member.state)


def _check_users(spec: GitlabMembersSpec, users: dict[str, GitlabUser]) -> None:
    unknown: set[str] = set()
    inactive: set[str] = set()
    for membership in (*spec.groups, *spec.projects):
        for member in membership.members:
            user = users.get(member.username.casefold())
            if user is None:
                unknown.add(member.username)
            elif not user.active:
                inactive.add(f"{user.username} ({user.state})")
    if unknown or inactive:
        parts = []
        if unknown:
            parts.append(f"no GitLab user is named {name_list(unknown)}")
        if inactive:
            parts.append(f"these GitLab users cannot be given access: {name_list(inactive)}")
        raise PermanentError(
            "UnknownUsers", "; ".join(parts) + f". Fix spec.gitlabMembers members; {NOTHING_CHANGED.lower()}"
        )
