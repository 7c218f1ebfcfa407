"""A run's request time (what its shared reads must be fresher than): a Kopf retry keeps the time
its handler first started, so it may use the reads its earlier tries made after the request."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from reconciler_operator.handlers import _request_time


def test_a_first_try_is_asked_for_now() -> None:
    before = time.time()
    assert before <= _request_time(None) <= time.time()


def test_a_retry_keeps_its_handlers_first_start_naive_or_aware() -> None:
    first = datetime.now(UTC) - timedelta(seconds=42)
    assert abs(_request_time(first) - first.timestamp()) < 0.001
    naive = first.replace(tzinfo=None)  # as Kopf reads it back from its progress annotation
    assert abs(_request_time(naive) - first.timestamp()) < 0.001


def test_a_start_in_the_future_counts_as_now() -> None:
    assert _request_time(datetime.now(UTC) + timedelta(hours=1)) <= time.time()
