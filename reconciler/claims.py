"""Ownership of external targets: one Reconcile writes to a Slack user group or a GitLab group/project.

A claim is keyed by the external target (Slack workspace + handle, GitLab instance + path), never by
Reconcile, and holds its owner (uid, namespace, name). Every change is one Lua script, so two
operators or two workers claiming at once cannot both win. Claims carry no TTL: they are released by
their owner (when it stops listing the target, or is deleted), and a claim whose owner no longer
exists in the cluster is taken over by the next claimant that checks (see `Claimer`).

Next to each owner's claims, `claims-of:{uid}` lists the target keys it holds: a reverse index, so
an owner can release what it no longer lists without scanning every claim.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import valkey
import valkey.exceptions
from pydantic import BaseModel, ConfigDict, ValidationError

from reconciler.cache.valkey import ValkeyCache
from reconciler.errors import PermanentError, TransientError
from reconciler.fleet.riders import Riders
from reconciler.integrations.common import name_list
from reconciler.models.target import Target

log = logging.getLogger(__name__)

PREFIX = "reconciler"

# claim(claim key, owner's index, owner JSON, owner uid, target key): the holder's JSON.
_CLAIM_ONE = """
local function claim(key, index, owner, uid, target)
  local current = redis.call('get', key)
  if current then
    local ok, held = pcall(cjson.decode, current)
    if ok and type(held) == 'table' and held['uid'] == uid
       and redis.call('sismember', index, target) == 0 then
      redis.call('sadd', index, target)
    end
    if ok and type(held) == 'table' and type(held['uid']) == 'string'
       and type(held['namespace']) == 'string' and type(held['name']) == 'string' then
      return current
    end
  end
  redis.call('set', key, owner)
  redis.call('sadd', index, target)
  return owner
end
"""

# KEYS: claim, owner's index. ARGV: owner JSON, owner uid, target key. Returns the owner's JSON.
_CLAIM = _CLAIM_ONE + "return claim(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])"

# KEYS: owner's index, one claim per target. ARGV: owner JSON, owner uid, one target key per target.
# Returns each target's holder (as _CLAIM, in order), then the index's members after those claims.
_CLAIM_MANY = (
    _CLAIM_ONE
    + """
local out = {}
for i = 2, #KEYS do out[i - 1] = claim(KEYS[i], KEYS[1], ARGV[1], ARGV[2], ARGV[i + 1]) end
out[#KEYS] = redis.call('smembers', KEYS[1])
return out
"""
)

# KEYS: claim, owner's index. ARGV: owner uid, target key. Deletes the claim only if uid holds it.
_RELEASE = """
redis.call('srem', KEYS[2], ARGV[2])
local current = redis.call('get', KEYS[1])
if not current then return 0 end
local ok, held = pcall(cjson.decode, current)
if ok and type(held) == 'table' and held['uid'] == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""

# KEYS: claim, stale owner's index, new owner's index. ARGV: stale JSON, new JSON, target key.
_TAKE_OVER = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('set', KEYS[1], ARGV[2])
redis.call('srem', KEYS[2], ARGV[3])
redis.call('sadd', KEYS[3], ARGV[3])
return 1
"""


def claim_key(target_key: str) -> str:
    return f"{PREFIX}:claim:{target_key}"


def owner_index_key(uid: str) -> str:
    return f"{PREFIX}:claims-of:{uid}"


class ClaimOwner(BaseModel):
    """A Reconcile, as its claims name it. `uid` tells a re-created namesake from the original."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    uid: str
    namespace: str
    name: str

    @property
    def display(self) -> str:
        return f"{self.namespace}/{self.name}"

    def to_json(self) -> str:
        return json.dumps({"uid": self.uid, "namespace": self.namespace, "name": self.name}, sort_keys=True)


@dataclass(frozen=True)
class ClaimState:
    """Who owns `target` as seen by one run; `held` is True when that run's Reconcile does."""

    target: Target
    owner: ClaimOwner
    held: bool

    def to_status(self) -> dict[str, object]:
        return {"target": self.target.key, "owner": self.owner.display, "held": self.held}


MAX_STATUS_CLAIMS = 50
MAX_STATUS_CLAIMS_BYTES = 16 * 1024


def claims_status(states: Sequence[ClaimState]) -> list[dict[str, object]]:
    """`status.claims`: conflicts first (they are what a person must act on), at most
    MAX_STATUS_CLAIMS entries and about MAX_STATUS_CLAIMS_BYTES, so status stays small."""
    ordered = sorted(states, key=lambda s: s.held)
    entries: list[dict[str, object]] = []
    size = 0
    for state in ordered[:MAX_STATUS_CLAIMS]:
        entry = state.to_status()
        size += len(json.dumps(entry))
        if size > MAX_STATUS_CLAIMS_BYTES:
            break
        entries.append(entry)
    return entries


class Claim(Protocol):
    """What a run calls with its targets before planning: claims (or peeks at) them, and returns who
    owns each. Targets whose state is not `held` are left out of the plan. `riders`: the run's
    queued commands (its plan's first reads), sent in the claims' round trip where it makes one."""

    def __call__(self, targets: Sequence[Target], riders: Riders | None = None) -> list[ClaimState]: ...


def conflict_error(conflicts: Sequence[ClaimState], *, others_done: str) -> PermanentError:
    """`Conflict`, naming each owner as namespace/name, so a person knows whom to talk to."""
    owners: dict[str, list[str]] = {}
    for state in conflicts:
        owners.setdefault(state.owner.display, []).append(state.target.label)
    parts = [f"{name_list(labels)} is claimed by Reconcile {owner}" for owner, labels in owners.items()]
    return PermanentError(
        "Conflict",
        "; ".join(parts) + f"; this Reconcile writes nothing to it until released ({others_done})",
    )


class ClaimsNotWritable(TransientError):
    """Valkey answers but refuses writes (full, read-only): claims can be read, not changed."""

    def __init__(self, message: str) -> None:
        super().__init__("CacheUnavailable", message)


class ClaimStore:
    """Claims in Valkey. Every method is one atomic script; errors become CacheUnavailable."""

    def __init__(self, cache: ValkeyCache) -> None:
        self.cache = cache
        client = cache.client
        self._claim = client.register_script(_CLAIM)
        self._claim_many = client.register_script(_CLAIM_MANY)
        self._release = client.register_script(_RELEASE)
        self._take_over = client.register_script(_TAKE_OVER)

    def claim(self, owner: ClaimOwner, target: Target) -> ClaimOwner:
        """Claim `target` for `owner` unless someone holds it; returns whoever holds it now."""
        with self._errors():
            raw = self._claim(
                keys=[claim_key(target.key), owner_index_key(owner.uid)],
                args=[owner.to_json(), owner.uid, target.key],
            )
        return self._parse(str(raw), target.key) or owner

    def claim_many(
        self, owner: ClaimOwner, targets: Sequence[Target], riders: Riders | None = None
    ) -> tuple[list[ClaimOwner], set[str]]:
        """`claim` each target in order, then `held_by`, in one round trip (one script), with the
        run's queued `riders` first. A refused write (ClaimsNotWritable) may leave the first targets
        claimed: claiming again is a no-op."""
        keys = [owner_index_key(owner.uid), *(claim_key(t.key) for t in targets)]
        args = [owner.to_json(), owner.uid, *(t.key for t in targets)]
        with self._errors():
            if riders is not None:
                raw = riders.run_script(self.cache.client, self._claim_many, keys, args)
            else:
                raw = self._claim_many(keys=keys, args=args)
        holders = [self._parse(str(r), t.key) or owner for r, t in zip(raw[:-1], targets, strict=True)]
        return holders, {str(m) for m in raw[-1]}

    def owner_of(self, target: Target) -> ClaimOwner | None:
        with self._errors():
            raw = self.cache.client.get(claim_key(target.key))
        return self._parse(str(raw), target.key) if raw is not None else None

    def take_over(self, target: Target, stale: ClaimOwner, owner: ClaimOwner) -> bool:
        """Replace `stale`'s claim by `owner`'s, only if `stale` still holds it (compare-and-set)."""
        with self._errors():
            done = self._take_over(
                keys=[claim_key(target.key), owner_index_key(stale.uid), owner_index_key(owner.uid)],
                args=[stale.to_json(), owner.to_json(), target.key],
            )
        return bool(done)

    def held_by(self, owner: ClaimOwner) -> set[str]:
        """Target keys `owner` holds (from its index)."""
        with self._errors():
            members = self.cache.client.smembers(owner_index_key(owner.uid))
        return {str(m) for m in members}  # type: ignore[union-attr]

    def release(self, owner: ClaimOwner, target_key: str) -> bool:
        with self._errors():
            return bool(
                self._release(
                    keys=[claim_key(target_key), owner_index_key(owner.uid)], args=[owner.uid, target_key]
                )
            )

    def release_all_but(
        self, owner: ClaimOwner, keep: Sequence[str] = (), held: set[str] | None = None
    ) -> list[str]:
        """Release every claim of `owner` except `keep`: targets it no longer lists, or all on delete.
        `held`: what `owner` holds, when just read (`claim_many`)."""
        held = self.held_by(owner) if held is None else held
        released = [key for key in sorted(held - set(keep)) if self.release(owner, key)]
        if released:
            log.info("Reconcile %s released %s", owner.display, name_list(released))
        return released

    @staticmethod
    def _parse(raw: str, key: str) -> ClaimOwner | None:
        try:
            return ClaimOwner.model_validate_json(raw)
        except ValidationError:
            log.warning("claim of %s is not a valid owner record; it is replaced", key)
            return None

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError, OSError) as exc:
            raise TransientError(
                "CacheUnavailable", f"claims: Valkey at {self.cache.display_url} is unreachable: {exc}"
            ) from None
        except valkey.exceptions.ValkeyError as exc:  # OOM, READONLY: nothing was changed
            raise ClaimsNotWritable(f"claims: Valkey refused the write: {exc}") from None


OwnerAlive = Callable[[ClaimOwner], bool]
"""True unless the Kubernetes API says that Reconcile (that very uid) is gone."""


class Claimer:
    """A run's claim step in the operator: claim every listed target, take over claims of Reconciles
    that no longer exist, release the targets no longer listed. `peek=True` (dry runs) changes
    nothing and only reports who owns what."""

    def __init__(
        self, store: ClaimStore, owner: ClaimOwner, owner_alive: OwnerAlive, *, peek: bool = False
    ) -> None:
        self.store, self.owner, self.owner_alive, self.peek = store, owner, owner_alive, peek

    def __call__(self, targets: Sequence[Target], riders: Riders | None = None) -> list[ClaimState]:
        held: set[str] | None = None
        states: list[ClaimState] | None = None
        if not self.peek:
            # The usual case in one round trip: every claim, then what this owner holds.
            try:
                holders, held = self.store.claim_many(self.owner, targets, riders)
                states = [self._settle(t, h) for t, h in zip(targets, holders, strict=True)]
            except ClaimsNotWritable:
                held = None  # Valkey refuses writes: target by target, as below
        if states is None:
            states = [self._one(target) for target in targets]
        if not self.peek:
            try:
                self.store.release_all_but(self.owner, [t.key for t in targets], held)
            except ClaimsNotWritable:
                log.warning("%s: Valkey refuses writes; a later run releases claims", self.owner.display)
        return states

    def _one(self, target: Target) -> ClaimState:
        if self.peek:
            holder = self.store.owner_of(target) or self.owner
        else:
            try:
                holder = self.store.claim(self.owner, target)
            except ClaimsNotWritable:
                # A full or read-only Valkey still answers reads: another owner's claim still wins;
                # a target nobody holds is written without a recorded claim (nobody else can record
                # one either until Valkey takes writes again; the next run then records it).
                holder = self.store.owner_of(target) or self.owner
                if holder.uid == self.owner.uid:
                    log.warning("%s: Valkey refuses writes; claim not recorded this run", target.label)
                return ClaimState(target, holder, held=holder.uid == self.owner.uid)
        return self._settle(target, holder)

    def _settle(self, target: Target, holder: ClaimOwner) -> ClaimState:
        """`holder` holds `target` now: ours, another's, or a gone owner's (taken over)."""
        if holder.uid == self.owner.uid:
            return ClaimState(target, self.owner, held=True)
        if self.peek or self.owner_alive(holder):
            return ClaimState(target, holder, held=False)
        try:
            taken = self.store.take_over(target, holder, self.owner)
        except ClaimsNotWritable:
            return ClaimState(target, holder, held=False)  # taken over once Valkey takes writes
        if taken:
            log.info("%s: took over the claim of %s, which no longer exists", target.label, holder.display)
            return ClaimState(target, self.owner, held=True)
        return ClaimState(target, self.store.owner_of(target) or holder, held=False)


def peek_owners(store: ClaimStore, targets: Sequence[Target]) -> list[ClaimState]:
    """Who claims each target, for `reconciler plan` (read-only); unclaimed targets are left out."""
    states = []
    for target in targets:
        holder = store.owner_of(target)
        if holder is not None:
            states.append(ClaimState(target, holder, held=False))
    return states


def open_store(url: str, timeout: float) -> ClaimStore:
    return ClaimStore(ValkeyCache.from_url(url, timeout=timeout))


class ClaimNotes:
    """For `reconciler plan`/`apply` (no cluster): says which targets a Reconcile in the cluster
    already claims, where a Valkey is configured. Never skips a target and never writes; a Valkey it
    cannot reach is skipped silently, and not asked again."""

    def __init__(self, url: str | None, timeout: float) -> None:
        self._store = ClaimStore(ValkeyCache.from_url(url, timeout=timeout)) if url else None

    def claim_for(self, namespace: str, name: str) -> tuple[Claim | None, list[str]]:
        """A `claim` callback for run_integration (None: no Valkey to ask), and the notes it fills in."""
        notes: list[str] = []
        if self._store is None:
            return None, notes

        def claim(targets: Sequence[Target], riders: Riders | None = None) -> list[ClaimState]:
            if self._store is None:
                return []
            try:
                states = peek_owners(self._store, targets)
            except TransientError as exc:
                log.debug("claims not checked: %s", exc.message)
                self._store = None
                return []
            notes.extend(
                f"{s.target.label} is claimed by Reconcile {s.owner.display} in the cluster: applied "
                "there, this Reconcile would be Stalled (Conflict) and write nothing to it"
                for s in states
                if (s.owner.namespace, s.owner.name) != (namespace, name)
            )
            return []

        return claim, notes
