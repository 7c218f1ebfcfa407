"""Pure planning: desired user groups + what Slack has now -> ordered actions. No I/O here.

Per user group, in spec order: create or enable, update metadata, add/remove users, disable.
`name`, `description` and `channels` left out of the spec (None) are not managed: never compared or
written (a new group gets its handle as name, no description and no channels); an explicitly empty
description or channel list clears Slack's. `users` is always authoritative.
An empty desired user list disables the group (Slack refuses empty lists); a later non-empty list
re-enables it. Groups whose handle is not in the spec are never touched. The plan is all-or-nothing:
unknown e-mails or channels raise before any action is returned.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.errors import PermanentError
from reconciler.integrations.common import name_list
from reconciler.integrations.slack_usergroups.models import (
    AddUsers,
    CreateUsergroup,
    DisableUsergroup,
    EnableUsergroup,
    RemoveUsers,
    SlackAction,
    SlackState,
    SlackUser,
    SlackUsergroup,
    SlackUsergroupState,
    UpdateUsergroup,
)


def plan(desired: Sequence[SlackUsergroup], current: SlackState) -> list[SlackAction]:
    """Return the actions that make Slack match `desired`; raise PermanentError if impossible."""
    users_by_email = {u.email.lower(): u for u in current.users if u.email}
    email_by_id = {u.id: u.email.lower() for u in current.users if u.email}
    _check_users(desired, users_by_email)
    _check_channels(desired, current.channels)
    existing = {g.handle: g for g in current.usergroups}
    _check_name_conflicts(desired, current.usergroups)

    actions: list[SlackAction] = []
    for group in desired:
        actions.extend(
            _plan_group(group, existing.get(group.handle), users_by_email, email_by_id, current.channels)
        )
    return actions


def plan_teardown(handles: Sequence[str], current: Sequence[SlackUsergroupState]) -> list[SlackAction]:
    """`deletionPolicy: Delete`: disable the listed groups that are enabled (Slack cannot delete one)."""
    existing = {g.handle: g for g in current}
    return [
        DisableUsergroup(target=handle, usergroup_id=existing[handle].id, why=TEARDOWN)
        for handle in handles
        if handle in existing and existing[handle].enabled
    ]


TEARDOWN = "its Reconcile was deleted with deletionPolicy: Delete"


def _plan_group(
    group: SlackUsergroup,
    state: SlackUsergroupState | None,
    users_by_email: dict[str, SlackUser],
    email_by_id: dict[str, str],
    channel_ids: dict[str, str],
) -> list[SlackAction]:
    desired_channel_ids = (
        tuple(channel_ids[name] for name in group.channels) if group.channels is not None else None
    )
    desired_user_ids = tuple(_user_id(users_by_email, email) for email in group.users)
    actions: list[SlackAction] = []

    if state is None:
        actions.append(
            CreateUsergroup(
                target=group.handle,
                name=group.name or group.handle,
                description=group.description or "",
                channel_ids=desired_channel_ids or (),
                channel_names=tuple(group.channels or ()),
            )
        )
        if group.users:
            actions.append(
                AddUsers(
                    target=group.handle,
                    usergroup_id=None,
                    emails=tuple(group.users),
                    user_ids=desired_user_ids,
                )
            )
        else:
            actions.append(DisableUsergroup(target=group.handle, usergroup_id=None))
        return actions

    if not state.enabled and group.users:
        actions.append(EnableUsergroup(target=group.handle, usergroup_id=state.id))

    update = _plan_update(group, state, desired_channel_ids, channel_ids)
    if update is not None:
        actions.append(update)

    if group.users:
        added = [
            email for email, uid in zip(group.users, desired_user_ids, strict=True) if uid not in state.users
        ]
        removed_ids = sorted(state.users - set(desired_user_ids))
        removed = tuple(email_by_id.get(uid, uid) for uid in removed_ids)
        if added:
            actions.append(
                AddUsers(
                    target=group.handle, usergroup_id=state.id, emails=tuple(added), user_ids=desired_user_ids
                )
            )
        if removed:
            actions.append(
                RemoveUsers(
                    target=group.handle, usergroup_id=state.id, emails=removed, user_ids=desired_user_ids
                )
            )
    elif state.enabled:
        actions.append(DisableUsergroup(target=group.handle, usergroup_id=state.id))
    return actions


def _plan_update(
    group: SlackUsergroup,
    state: SlackUsergroupState,
    desired_channel_ids: tuple[str, ...] | None,
    channel_ids: dict[str, str],
) -> UpdateUsergroup | None:
    """Only fields the spec sets are compared; None means "leave Slack's value alone"."""
    changes: list[str] = []
    name = description = None
    channels: tuple[str, ...] | None = None
    if group.name is not None and group.name != state.name:
        name = group.name
        changes.append(f"name {state.name!r} -> {group.name!r}")
    if group.description is not None and group.description != state.description:
        description = group.description
        changes.append(f"description {state.description!r} -> {group.description!r}")
    if desired_channel_ids is not None and set(desired_channel_ids) != state.channels:
        channels = desired_channel_ids
        names_by_id = {cid: name for name, cid in channel_ids.items()}
        added = sorted(f"#{names_by_id.get(c, c)}" for c in set(desired_channel_ids) - state.channels)
        removed = sorted(f"#{names_by_id.get(c, c)}" for c in state.channels - set(desired_channel_ids))
        changes.append("channels " + " ".join([*(f"+{c}" for c in added), *(f"-{c}" for c in removed)]))
    if not changes:
        return None
    return UpdateUsergroup(
        target=group.handle,
        usergroup_id=state.id,
        name=name,
        description=description,
        channel_ids=channels,
        changes=tuple(changes),
    )


def _user_id(users_by_email: dict[str, SlackUser], email: str) -> str:
    return users_by_email[email].id


def _check_users(desired: Sequence[SlackUsergroup], users_by_email: dict[str, SlackUser]) -> None:
    unknown: set[str] = set()
    deleted: set[str] = set()
    for group in desired:
        for email in group.users:
            user = users_by_email.get(email)
            if user is None:
                unknown.add(email)
            elif user.deleted:
                deleted.add(email)
    if unknown or deleted:
        parts = []
        if unknown:
            parts.append(f"no Slack user has the e-mail {name_list(unknown)}")
        if deleted:
            parts.append(f"deactivated Slack users: {name_list(deleted)}")
        raise PermanentError(
            "UnknownUsers",
            "; ".join(parts) + ". Fix spec.slackUsergroups.usergroups[].users; nothing was changed.",
        )


def _check_channels(desired: Sequence[SlackUsergroup], channels: dict[str, str]) -> None:
    unknown = {name for group in desired for name in group.channels or () if name not in channels}
    if unknown:
        raise PermanentError(
            "UnknownChannels",
            f"no Slack channel named {name_list('#' + c for c in unknown)} (archived channels do not count). "
            "Fix spec.slackUsergroups.usergroups[].channels; nothing was changed.",
        )


def _check_name_conflicts(desired: Sequence[SlackUsergroup], current: Sequence[SlackUsergroupState]) -> None:
    """Slack names are unique per workspace: a name held by an unmanaged group would fail at apply."""
    owner_of_name = {g.name.casefold(): g.handle for g in current}
    existing = {g.handle for g in current}
    for group in desired:
        # The name this plan would write: the spec's, or for a new group its handle; else none.
        name = group.name or (group.handle if group.handle not in existing else None)
        owner = owner_of_name.get(name.casefold()) if name else None
        if owner is not None and owner != group.handle:
            raise PermanentError(
                "Conflict",
                f"usergroup {group.handle}: the name {name!r} is already used by the user group "
                f"@{owner}; choose another name. Nothing was changed.",
            )
