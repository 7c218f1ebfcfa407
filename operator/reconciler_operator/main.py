"""`reconciler run`: start Kopf with our handlers and settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import kopf
import uvloop

from reconciler.settings import get_settings
from reconciler_operator.affinity import pin_to_one_cpu

log = logging.getLogger(__name__)


class TimerSuccessAtDebug(logging.Filter):
    """Kopf logs every timer tick's success at INFO: once per Reconcile every few seconds, which
    buries what matters. Such lines become DEBUG (kept with --verbose / RECONCILER_LOG_LEVEL=DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        tick = message.startswith("Timer ") and message.endswith(" succeeded.")
        if record.levelno == logging.INFO and tick:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def quiet_timer_successes() -> None:
    logger = logging.getLogger("kopf.objects")
    if not any(isinstance(f, TimerSuccessAtDebug) for f in logger.filters):
        logger.addFilter(TimerSuccessAtDebug())


def run_operator(
    *,
    namespaces: list[str],
    clusterwide: bool,
    standalone: bool,
    liveness_endpoint: str | None = None,
) -> None:
    """Block running the operator until SIGINT/SIGTERM."""
    import reconciler_operator.handlers  # noqa: F401  (registers the handlers with Kopf)

    quiet_timer_successes()

    if not namespaces and not clusterwide:
        clusterwide = True
    settings = get_settings()
    cpu = pin_to_one_cpu(settings.pin_cpu)  # before Kopf and the pools start their threads
    if cpu is not None:
        log.info("every thread of this operator runs on CPU %d (RECONCILER_PIN_CPU)", cpu)
    log.info(
        "watching %s%s",
        "all namespaces" if clusterwide else ", ".join(namespaces),
        f"; shard: Reconciles matching {settings.shard_selector!r}" if settings.shard_selector else "",
    )
    operator = kopf.operator(
        standalone=standalone,
        namespaces=namespaces,
        clusterwide=clusterwide,
        liveness_endpoint=liveness_endpoint,
        peering_name=settings.kopf_peering_name(),
    )
    # As kopf.run, on uvloop: the event loop's own work (callbacks, futures, the sockets of every
    # watch event, patch and Event) costs less, and the loop is what the operator waits for.
    with contextlib.suppress(asyncio.CancelledError):
        uvloop.run(operator)
