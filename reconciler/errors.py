"""Errors a run can end with, each carrying the condition reason the operator reports.

`permanent` errors need a person (bad spec, unknown users, rejected token): the operator reports
`Stalled=True` and does not retry them. Transient ones (network, 5xx, rate limits, cache down) are
retried with backoff.
"""

from __future__ import annotations


class ReconcileError(Exception):
    """A run failed for `reason` (a CamelCase condition reason); `message` says what to do."""

    permanent: bool = True

    def __init__(self, reason: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


class PermanentError(ReconcileError):
    permanent = True


class TransientError(ReconcileError):
    permanent = False


class InvalidSpec(PermanentError):
    def __init__(self, message: str) -> None:
        super().__init__("InvalidSpec", message)


class CredentialsNotFound(PermanentError):
    def __init__(self, message: str) -> None:
        super().__init__("CredentialsNotFound", message)


class Unauthorized(PermanentError):
    def __init__(self, message: str) -> None:
        super().__init__("Unauthorized", message)


class Forbidden(PermanentError):
    def __init__(self, message: str) -> None:
        super().__init__("Forbidden", message)


class MissingScope(PermanentError):
    """The token lacks scopes a run needs: found before the first write, so nothing is written."""

    def __init__(self, message: str) -> None:
        super().__init__("MissingScope", message)


class CacheUnavailable(TransientError):
    def __init__(self, message: str) -> None:
        super().__init__("CacheUnavailable", message)


class RateLimited(TransientError):
    """The service asked us to wait longer than a worker may sleep: the run gives its worker back
    and is rescheduled `retry_after` seconds later (already capped by the client)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__("RateLimited", message, retry_after=retry_after)


class Timeout(TransientError):
    """The run passed `RECONCILER_RUN_DEADLINE_SECONDS`; what it applied stays, the next run re-plans."""

    def __init__(self, message: str) -> None:
        super().__init__("Timeout", message)
