"""`reconciler run`: start Kopf with our handlers and settings."""

from __future__ import annotations

import logging

import kopf

from reconciler.settings import get_settings

log = logging.getLogger(__name__)


def run_operator(
    *,
    namespaces: list[str],
    clusterwide: bool,
    standalone: bool,
    liveness_endpoint: str | None = None,
) -> None:
    """Block running the operator until SIGINT/SIGTERM."""
    import reconciler_operator.handlers  # noqa: F401  (registers the handlers with Kopf)

    if not namespaces and not clusterwide:
        clusterwide = True
    settings = get_settings()
    log.info(
        "watching %s%s",
        "all namespaces" if clusterwide else ", ".join(namespaces),
        f"; shard: Reconciles matching {settings.shard_selector!r}" if settings.shard_selector else "",
    )
    kopf.run(
        standalone=standalone,
        namespaces=namespaces,
        clusterwide=clusterwide,
        liveness_endpoint=liveness_endpoint,
        peering_name=settings.kopf_peering_name(),
    )
