"""State shared by every run on one external account (a Slack workspace, a GitLab user on an
instance), kept in Valkey so that workers and replicas share it: a rate budget per account and
method, and reads (directory, user-group snapshot) fetched once and used by many runs.

Keys name the account, never a Reconcile: cost grows with the workspace, not with the fleet.
"""

import valkey.exceptions

from reconciler.errors import CacheUnavailable
from reconciler.fleet.budget import RateBudget
from reconciler.fleet.context import Fleet
from reconciler.fleet.shared_read import ReadStamp, SharedReads

CACHE_ERRORS = (CacheUnavailable, valkey.exceptions.ValkeyError, OSError)
"""What a shared read or the budget raises when Valkey is gone, full (OOM) or read-only: a run then
goes on alone (reads everything itself, no shared budget), as it would without a fleet."""

__all__ = ["CACHE_ERRORS", "Fleet", "RateBudget", "ReadStamp", "SharedReads"]
