"""Session-wide real parts: a valkey-server process (no fakeredis)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.valkey_server import ValkeyProcess


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyProcess]:
    server = ValkeyProcess(Path(tmp_path_factory.mktemp("valkey"))).start()
    yield server
    server.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import os

    if os.environ.get("KUBECONFIG") and os.environ.get("RECONCILER_CLUSTER_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="needs a real cluster: set KUBECONFIG and RECONCILER_CLUSTER_TESTS=1")
    for item in items:
        if "cluster" in item.keywords:
            item.add_marker(skip)
