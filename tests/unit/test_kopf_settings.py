"""Kopf is configured as the operator needs: sized executor, watch timeouts, our annotation prefix."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import kopf

from reconciler.settings import Settings
from reconciler_operator.runtime import KOPF_PREFIX, configure_kopf


def test_configure_kopf() -> None:
    settings = kopf.OperatorSettings()
    config = Settings(valkey_url="unused", max_workers=13, watch_server_timeout=123, watch_client_timeout=150)
    executor = ThreadPoolExecutor(max_workers=config.max_workers)
    configure_kopf(settings, config, executor)
    assert settings.execution.executor is executor and settings.execution.max_workers == 13
    assert settings.watching.server_timeout == 123 and settings.watching.client_timeout == 150
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert settings.persistence.progress_storage.prefix == KOPF_PREFIX == "operator.reconciler.dev"
    assert settings.persistence.finalizer.startswith(KOPF_PREFIX + "/")
    assert settings.posting.level == logging.WARNING
    executor.shutdown()


def test_replicas_get_distinct_peering_priorities() -> None:
    priorities = set()
    for _ in range(5):
        settings = kopf.OperatorSettings()
        with ThreadPoolExecutor(max_workers=1) as executor:
            configure_kopf(settings, Settings(valkey_url="unused"), executor)
        assert settings.peering.name == "reconciler" and settings.peering.mandatory is False
        priorities.add(settings.peering.priority)
    assert len(priorities) == 5
    settings = kopf.OperatorSettings()
    with ThreadPoolExecutor(max_workers=1) as executor:
        configure_kopf(settings, Settings(valkey_url="unused", peering_priority=7), executor)
    assert settings.peering.priority == 7
