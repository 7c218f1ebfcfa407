"""Kopf is configured as the issue requires: sized executor, watch timeouts, our annotation prefix."""

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
