"""Commands a run owes Valkey that may ride along with its next round trip instead of making their own.

Reads ride too: a plan's first reads are queued before its claims and board the claims' trip (a
reader given `on_reply` gets its results; one that never boarded is cancelled and read directly).

In the operator, a run's task record's saves carry its riders too (`carried`; the executor hands
them to `TaskStore.save`). The planned save then carries the budget token of the apply's first call (taken in
the trip right before that call, as always), and the final save carries the last write-throughs in
the same pipeline as, and before, the script that releases the run's lock.

A run's write-through (its own change to a shared snapshot: a Slack user group, a GitLab member
listing) must land before anything can read the snapshot expecting it: this Reconcile's next run,
which starts only after this run's final save releases its lock. So a write-through is queued here
and boards the run's next trip that happens anyway (the rate-budget token for its next Slack or
GitLab call), and the service sends whatever is still queued when its apply ends, before the run
returns (`send_unless_carried`; in the operator the final save carries it). A Valkey that refuses a
rider (full, read-only) loses it as a failed write-through always did: the snapshot learns the
change at its next read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import valkey
import valkey.exceptions
from valkey.commands.core import Script

log = logging.getLogger(__name__)

Commands = Callable[[Any], None]
"""Adds a rider's commands to a pipeline (valkey's Pipeline: its commands return the pipeline)."""


@dataclass(frozen=True)
class Rider:
    what: str
    """For logs: what the rider writes."""
    commands: Commands
    count: int
    """How many commands `commands` adds."""
    on_reply: Callable[[list[Any]], None] | None = None
    """A read's results (errors included, as exceptions); None: a write, whose errors are logged."""


class Riders:
    """One run's queued riders (a run is one thread; the lock only keeps the queue consistent)."""

    def __init__(self, client: valkey.Valkey | None = None, *, carried: bool = False) -> None:
        """`carried`: the run's task record's saves carry them (its executor passes them to
        `TaskStore.save`), so nothing waits for a trip of its own (`client`: the Valkey they are
        meant for; a save on another sends them first on their own)."""
        self._queued: list[Rider] = []
        self._lock = threading.Lock()
        self.client = client
        self.carried = carried

    def add(
        self, what: str, commands: Commands, count: int, on_reply: Callable[[list[Any]], None] | None = None
    ) -> Rider:
        rider = Rider(what, commands, count, on_reply)
        with self._lock:
            self._queued.append(rider)
        return rider

    def cancel(self, rider: Rider) -> bool:
        """Take `rider` off the queue; False if it already boarded a trip."""
        with self._lock:
            queued = any(r is rider for r in self._queued)
        self._drop([rider])
        return queued

    def __len__(self) -> int:
        with self._lock:
            return len(self._queued)

    def board(self, pipe: Any) -> list[Rider]:
        """Put the queued riders' commands first in `pipe`; pass the returned list and the
        pipeline's results to `landed` after it ran (else they stay queued)."""
        with self._lock:
            boarding = list(self._queued)
        for rider in boarding:
            rider.commands(pipe)
        return boarding

    def landed(self, boarded: list[Rider], results: list[Any]) -> list[Any]:
        """`boarded` were sent (the pipeline ran): dequeue them, log those Valkey refused; returns
        the results of the commands after them."""
        self._drop(boarded)
        at = 0
        for rider in boarded:
            mine = results[at : at + rider.count]
            refused = [r for r in mine if isinstance(r, Exception)]
            if rider.on_reply is not None:
                rider.on_reply(mine)
            elif refused:
                log.warning(
                    "Valkey refused %s (%s): the shared snapshot learns of it at its next read",
                    rider.what,
                    str(refused[0])[:200],
                )
            at += rider.count
        return results[at:]

    def run_script(self, client: valkey.Valkey, script: Script, keys: list[str], args: list[Any]) -> Any:
        """The queued riders, then `script`, in one round trip; its reply, or its error raised. The
        script goes by its hash (a pipeline would first ask SCRIPT EXISTS: a trip of its own); a
        server that does not know it yet gets it again on its own, which loads it. Nothing queued:
        the script on its own."""
        if not len(self):
            return script(keys=keys, args=args)
        pipe = client.pipeline(transaction=False)
        boarded = self.board(pipe)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        (reply,) = self.landed(boarded, pipe.execute(raise_on_error=False))  # type: ignore[no-untyped-call]
        if isinstance(reply, valkey.exceptions.NoScriptError):
            return script(keys=keys, args=args)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _drop(self, boarded: list[Rider]) -> None:
        gone = {id(r) for r in boarded}
        with self._lock:
            self._queued = [r for r in self._queued if id(r) not in gone]

    def forget(self, why: str) -> None:
        """Drop what is queued (the trip meant to carry it failed), saying so."""
        with self._lock:
            dropped, self._queued = self._queued, []
        writes = [r.what for r in dropped if r.on_reply is None]
        if writes:
            log.warning("%s: the shared snapshot learns of %s at its next read", why, ", ".join(writes))

    def send_unless_carried(self) -> None:
        """At the end of a run's apply: send what is still queued (one round trip; none when nothing
        is), unless the run's final save carries it (`carried`: a run of a task, in the operator)."""
        if not self.carried and self.client is not None:
            self.flush(self.client)

    def flush(self, client: valkey.Valkey) -> None:
        """Send what is still queued, in one round trip (at the end of a run's apply)."""
        if not len(self):
            return
        pipe = client.pipeline(transaction=False)
        boarded = self.board(pipe)
        try:
            results = pipe.execute(raise_on_error=False)  # type: ignore[no-untyped-call]
        except (valkey.exceptions.ValkeyError, OSError) as exc:
            self._drop(boarded)
            log.warning(
                "Valkey is unreachable (%s): the shared snapshot learns of %s at its next read",
                str(exc)[:200],
                ", ".join(r.what for r in boarded),
            )
            return
        self.landed(boarded, results)
