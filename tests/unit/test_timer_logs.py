"""Kopf's per-tick `Timer 'interval' succeeded.` is DEBUG, not INFO; other handler lines stay INFO."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from reconciler_operator.main import quiet_timer_successes


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected() -> Iterator[Collect]:
    root, kopf_objects = logging.getLogger(), logging.getLogger("kopf.objects")
    handlers, level, filters = list(root.handlers), root.level, list(kopf_objects.filters)
    handler = Collect()
    root.handlers[:] = [handler]
    quiet_timer_successes()
    quiet_timer_successes()  # idempotent
    yield handler
    root.handlers[:] = handlers
    root.setLevel(level)
    kopf_objects.filters[:] = filters


def test_timer_success_is_hidden_at_info(collected: Collect) -> None:
    logging.getLogger().setLevel(logging.INFO)
    logger = logging.getLogger("kopf.objects")
    logger.info("Timer 'interval' succeeded.")
    logger.info("Handler 'run' succeeded.")
    logger.info("Timer 'interval' failed with an exception. Will retry.")
    assert [(r.levelname, r.getMessage()) for r in collected.records] == [
        ("INFO", "Handler 'run' succeeded."),
        ("INFO", "Timer 'interval' failed with an exception. Will retry."),
    ]


def test_timer_success_is_debug_when_debugging(collected: Collect) -> None:
    logging.getLogger().setLevel(logging.DEBUG)
    logging.getLogger("kopf.objects").info("Timer 'interval' succeeded.")
    assert [(r.levelname, r.getMessage()) for r in collected.records] == [
        ("DEBUG", "Timer 'interval' succeeded.")
    ]


def test_only_reconciles_with_an_interval_or_a_conflict_to_retry_have_a_timer() -> None:
    import kopf

    from reconciler_operator.handlers import _has_timer_work

    def status(stalled: str, reason: str) -> kopf.Status:
        return kopf.Status(
            {"status": {"conditions": [{"type": "Stalled", "status": stalled, "reason": reason}]}}
        )

    none = kopf.Status({})
    assert _has_timer_work(spec=kopf.Spec({"spec": {"interval": "5m"}}), status=none)
    assert not _has_timer_work(spec=kopf.Spec({"spec": {}}), status=none)
    assert _has_timer_work(spec=kopf.Spec({"spec": {}}), status=status("True", "Conflict"))
    assert not _has_timer_work(spec=kopf.Spec({"spec": {}}), status=status("False", "Conflict"))
    assert not _has_timer_work(spec=kopf.Spec({"spec": {}}), status=status("True", "InvalidSpec"))
