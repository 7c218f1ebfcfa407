"""Session-wide real parts: a valkey-server process (no fakeredis); logging put back after each test."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.valkey_server import ValkeyProcess


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyProcess]:
    server = ValkeyProcess(Path(tmp_path_factory.mktemp("valkey"))).start()
    yield server
    server.stop()


@pytest.fixture
def doomed(tmp_path: Path) -> Iterator[ValkeyProcess]:
    """A valkey-server of the test's own, for a test that stops it (a Valkey dying mid-run)."""
    server = ValkeyProcess(tmp_path / "doomed").start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """A command run in-process (CliRunner) sets up logging on the runner's stderr, which is closed
    afterwards: left in place, every later record, from any thread, prints "--- Logging error ---".
    Put the root handlers and every logger's level back as they were."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {
        name: logger.level
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    yield
    # pytest adds and removes its own capture handlers around each phase: leave those to it.
    theirs = [h for h in root.handlers if type(h).__module__.startswith("_pytest")]
    root.handlers[:] = [h for h in handlers if not type(h).__module__.startswith("_pytest")] + theirs
    root.setLevel(level)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            logger.setLevel(levels.get(name, logging.NOTSET))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import os

    if os.environ.get("KUBECONFIG") and os.environ.get("RECONCILER_CLUSTER_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="needs a real cluster: set KUBECONFIG and RECONCILER_CLUSTER_TESTS=1")
    for item in items:
        if "cluster" in item.keywords:
            item.add_marker(skip)
