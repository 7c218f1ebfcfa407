"""All settings, from `RECONCILER_*` environment variables (pydantic-settings)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reconciler.selector import parse_selector
from reconciler.tenancy import DEFAULT_ALLOWED_HOSTS, parse_allowed_hosts


def _default_runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"reconciler-{os.getuid()}"


class Settings(BaseSettings):
    """Operator, sidecar and command-line settings. Every field is `RECONCILER_<NAME>`."""

    model_config = SettingsConfigDict(
        env_prefix="RECONCILER_", extra="ignore", validate_default=True, use_attribute_docstrings=True
    )

    valkey_url: str | None = None
    """Valkey to keep task records in (`valkey://host:6379/0`, `unix:///path`). Unset: an embedded,
    private valkey-server is started under `runtime_dir` and shared by `run` and `api` (dev only)."""

    valkey_password: SecretStr | None = None
    """Valkey's password, when the URL has none (the chart passes its generated password this way,
    so that it appears in no URL and no command line)."""

    valkey_ca_file: Path | None = None
    """CA bundle that verifies a TLS Valkey (`rediss://` or `valkeys://` URL)."""

    runtime_dir: Path = Field(default_factory=_default_runtime_dir)
    """Where the embedded Valkey keeps its socket, pid file and data."""

    max_workers: int = Field(default=8, ge=1, le=512)
    """Threads that run integration services; also the size of Kopf's sync-handler executor."""

    task_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60, le=366 * 24 * 3600)
    """How long task records stay in the cache."""

    history_size: int = Field(default=20, ge=1, le=1000)
    """How many recent task ids are kept per Reconcile."""

    api_token: SecretStr | None = None
    """When set, the sidecar requires `Authorization: Bearer <token>` (except /healthz, /readyz)."""

    api_auth: Literal["kubernetes", "token", "none"] | None = None
    """Who may read the sidecar: `kubernetes` (TokenReview + SubjectAccessReview: `get` on
    `reconciles` in the task's namespace; `get` on the non-resource URL /metrics), `token`
    (RECONCILER_API_TOKEN), or `none`. Unset: `token` when a token is set, else `none`."""

    api_auth_cache_seconds: float = Field(default=30.0, ge=0, le=600)
    """How long the sidecar reuses a TokenReview or SubjectAccessReview answer."""

    api_docs: bool = True
    """Serve /docs and /openapi.json from the sidecar (the chart turns them off)."""

    lock_ttl_seconds: int = Field(default=30, ge=3, le=3600)
    """A run renews its Reconcile's lock every third of this; a crashed run's lock frees after it."""

    secret_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    """The operator reuses a Secret's token read by a run for the runs that start within this (a
    rotated token or a removed credentials label applies that much later); 0 reads it every run."""

    peering_priority: int | None = Field(default=None, ge=0)
    """Kopf peering priority of this replica; the highest live one works, the rest stand by.
    Unset: a random one, because replicas of equal priority would all pause."""

    operator_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """Port for the operator's own Prometheus metrics (event-loop lag, runs); unset: off."""

    min_interval_seconds: float = Field(default=10.0, ge=0.1, le=24 * 3600)
    """Shortest `spec.interval` honoured; shorter ones are raised to this to avoid hot loops."""

    interval_check_seconds: float = Field(default=5.0, gt=0, le=3600)
    """How often each Reconcile's timer checks whether its `spec.interval` has passed."""

    backoff_base_seconds: float = Field(default=5.0, gt=0, le=3600)
    """First retry delay after a transient failure; doubles per retry."""

    backoff_max_seconds: float = Field(default=600.0, gt=0, le=24 * 3600)
    """Longest retry delay after transient failures."""

    watch_server_timeout: int = Field(default=300, ge=10, le=3600)
    """Seconds the API server keeps a watch open before closing it (Kopf reconnects)."""

    watch_client_timeout: int = Field(default=330, ge=10, le=3600)
    """Seconds after which the operator drops a silent watch stream and reconnects."""

    watch_connect_timeout: int = Field(default=30, ge=1, le=600)
    """Seconds to establish a connection to the Kubernetes API."""

    cluster_connect_timeout_seconds: float = Field(default=15.0, gt=0, le=600)
    """How long `reconciler run` tries to log in and reach the Kubernetes API at start before it
    exits with one line saying why (no credentials, refused, unreachable, not a Kubernetes API)."""

    http_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    """Timeout of every call to Slack or GitLab."""

    rate_limit_retries: int = Field(default=8, ge=0, le=100)
    """How many HTTP 429 answers in a row a client waits out (Retry-After) before giving up."""

    transient_retries: int = Field(default=3, ge=0, le=20)
    """Retries of connection errors and HTTP 5xx per call."""

    run_deadline_seconds: float = Field(default=300.0, gt=0, le=24 * 3600)
    """The most one run may take, retries, slow answers and paging included; past it the run fails
    with reason `Timeout` (retried with backoff) and its worker is free."""

    rate_limit_inline_wait_seconds: float = Field(default=5.0, ge=0, le=60)
    """Longest `Retry-After` a worker waits out in place; a longer one ends the run as `RateLimited`
    and the operator reschedules it for then, so no worker sleeps through a long limit."""

    retry_after_max_seconds: float = Field(default=900.0, gt=0)
    """Cap on a service's `Retry-After`: a hostile or broken server cannot park a Reconcile longer."""

    max_pages: int = Field(default=1000, ge=1, le=100_000)
    """Most pages one listing may take (Slack and GitLab), so an endless "next page" ends."""

    shard_selector: str | None = None
    """Kubernetes label selector (`reconciler.dev/shard=a`, `tier in (a,b)`, `!reconciler.dev/shard`):
    this operator runs only the Reconciles it matches, other shards the rest (docs/scaling.md).
    Unset: every Reconcile it watches."""

    pin_cpu: str | None = Field(default=None, pattern=r"^(auto|[0-9]{1,4})?$")
    """Keep every thread of the operator on one CPU: `auto` (the idlest one it may use at start) or
    a CPU number. The operator is GIL-bound, and handing the GIL between cores cost it about a fifth
    of its CPU in bench P5. Pin only where it has that core to itself (docs/scaling.md). Unset: off."""

    peering_name: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    """Kopf peering object this operator's replicas share. Unset: `reconciler`, or for a shard one
    derived from its selector, so that shards never pause each other."""
    shared_cache: bool = True
    """Share reads (directory, user-group snapshot) and one rate budget per external account through
    Valkey, across workers and replicas. Off: every run reads everything itself (as before 0.2)."""

    slack_rate_window_seconds: float = Field(default=60.0, gt=0)
    """Window of Slack's per-method tiers (Tier 2: 20 calls, Tier 3: 50, Tier 4: 100 per window).
    Slack's is one minute; tests and benchmarks shorten it together with their test server."""

    gitlab_rate_limit: int = Field(default=2000, ge=1)
    """Requests one GitLab user may make per `gitlab_rate_window_seconds`, shared by every run and
    replica (GitLab.com: 2,000 a minute of authenticated API traffic; self-managed instances set
    their own, often 7,200 an hour)."""

    gitlab_rate_window_seconds: float = Field(default=60.0, gt=0)
    """Window of `gitlab_rate_limit` and `gitlab_member_delete_limit`."""

    gitlab_member_delete_limit: int = Field(default=60, ge=1)
    """Member removals one GitLab user may make per group or project per
    `gitlab_rate_window_seconds`, shared like `gitlab_rate_limit` (GitLab's Members API rate limit:
    60 a minute by default since GitLab 16.9)."""

    snapshot_max_age_seconds: float = Field(default=60.0, gt=0)
    """How old a shared read (user groups, channels, members) may be for a run nobody asked for
    explicitly (interval, resume); never older than the Reconcile's `spec.interval` either. Runs
    after a create, a spec change or `requested-at` always use a read that started after the
    request."""

    directory_refresh_seconds: float = Field(default=3600.0, gt=0)
    """At most one full directory sweep (Slack `users.list`) per this period; in between only
    unknown e-mails are looked up one by one. Deactivations are picked up by the next sweep at the
    latest, and at once by any write they would affect."""

    directory_recheck_seconds: float = Field(default=60.0, ge=0)
    """Before creating a user group, its users are looked up again (`users.lookupByEmail`) when
    their directory entry is older than this, so a stale "user exists" does not create a group a
    fresh read would have refused. Users added to existing groups need no re-check: Slack refuses a
    deactivated user in the update itself, and the run then reports it as `UnknownUsers`."""

    shared_read_coalesce_seconds: float = Field(default=0.5, ge=0, le=5)
    """How long after a run's request its shared user-group or channel read (GitLab: the token's
    user and username lookups) may start at the earliest, so that runs requested at about the same
    time (a GitOps sync, or a script annotating many Reconciles with `requested-at`) share one read
    instead of one per arrival. Only runs asked
    for explicitly wait, and only the part of it not already spent queued for a worker: an explicit
    run is up to this much slower, an interval run not at all. 0 turns gathering off."""

    shared_read_wait_seconds: float = Field(default=20.0, gt=0)
    """Longest a run waits for another worker's shared read before reading itself."""

    cache_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    """Socket timeout of Valkey calls, so a dead cache fails fast instead of hanging."""

    conflict_retry_seconds: float = Field(default=60.0, ge=1)
    """How often a Reconcile stalled on `Conflict` tries again to claim its targets (or sooner, on
    its `spec.interval`): a released claim is taken over within this, without a hot loop."""

    delete_retries: int = Field(default=5, ge=0, le=50)
    """Retries (with backoff) of the `deletionPolicy: Delete` work before the finalizer is released
    anyway, leaving the targets as they are, with a Warning event."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level of the operator and the sidecar."""

    allowed_hosts: str = DEFAULT_ALLOWED_HOSTS
    """Comma-separated `host`, `host:port`, `*.example.com` or IP that specs may make the operator
    call (`apiUrl`, `url`). Checked after DNS resolution: a name resolving to an internal address
    (loopback, link-local, private) is refused unless that name or address is listed explicitly."""

    enforce_allowed_hosts: bool = False
    """Enforce `allowed_hosts` in `reconciler plan/apply` too. The operator always enforces it."""

    @field_validator("shard_selector")
    @classmethod
    def _check_shard_selector(cls, value: str | None) -> str | None:
        if value is not None:
            parse_selector(value)  # ValueError names the bad requirement
        return value

    def kopf_peering_name(self) -> str:
        """The peering name to use: shards get distinct ones (replicas of one shard share it)."""
        if self.peering_name:
            return self.peering_name
        if self.shard_selector:
            return f"reconciler-shard-{hashlib.sha256(self.shard_selector.encode()).hexdigest()[:10]}"
        return "reconciler"

    @field_validator("allowed_hosts")
    @classmethod
    def _check_allowed_hosts(cls, value: str) -> str:
        parse_allowed_hosts(value)  # ValueError names the bad entry
        return value


def reference_markdown() -> str:
    """docs/configuration.md, generated from the fields and docstrings above (`make docs`)."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `make docs` from reconciler/settings.py; a test fails when it is stale. -->",
        "",
        "Every setting is an environment variable of the operator, the sidecar and the CLI.",
        "",
        "| variable | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = "(computed)" if field.default_factory is not None else repr(field.default)
        if field.default is None and field.default_factory is None:
            default = "unset"
        kind = str(field.annotation).replace("typing.", "").replace("pydantic.types.", "")
        kind = kind.replace("<class '", "").replace("'>", "").replace("pathlib.", "").replace("|", "\\|")
        meaning = " ".join((field.description or "").split()).replace("|", "\\|")
        lines.append(f"| `RECONCILER_{name.upper()}` | `{kind}` | `{default}` | {meaning} |")
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()


if __name__ == "__main__":
    print(reference_markdown(), end="")
