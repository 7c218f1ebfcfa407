"""What a run gets to share with the fleet: Valkey, the rate budget, shared reads, and how fresh
its reads must be."""

from __future__ import annotations

from dataclasses import dataclass

import valkey

from reconciler.fleet.budget import RateBudget
from reconciler.fleet.riders import Riders
from reconciler.fleet.shared_read import SharedReads
from reconciler.settings import Settings

PREFIX = "reconciler:fleet"


@dataclass(frozen=True)
class Fleet:
    client: valkey.Valkey
    settings: Settings
    fresh_after: float
    """Epoch seconds: shared reads this run uses must have started at or after this (for a run
    asked for explicitly, the time of the request; else now minus `snapshot_max_age_seconds`)."""
    budget: RateBudget
    reads: SharedReads
    riders: Riders
    """This run's writes waiting for its next round trip (write-throughs: see riders.py)."""

    @classmethod
    def create(
        cls, client: valkey.Valkey, settings: Settings, *, fresh_after: float, carried: bool = False
    ) -> Fleet:
        """`carried`: the run's task record's saves (TaskStore.save) carry its queued commands: the
        planned save its first budget token, the final save its last write-throughs."""
        riders = Riders(client, carried=carried)
        return cls(
            client=client,
            settings=settings,
            fresh_after=fresh_after,
            riders=riders,
            budget=RateBudget(client, max_wait=settings.rate_limit_inline_wait_seconds, riders=riders),
            reads=SharedReads(
                client,
                wait_seconds=settings.shared_read_wait_seconds,
                ttl_seconds=int(
                    max(settings.snapshot_max_age_seconds, settings.directory_refresh_seconds) * 2
                ),
                gather_seconds=settings.shared_read_coalesce_seconds,
                # The operator's pool: once all of it waits for one read, that read starts at once.
                workers=settings.max_workers,
            ),
        )

    def key(self, account: str, *parts: str) -> str:
        return ":".join((PREFIX, account, *parts))
