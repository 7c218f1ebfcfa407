"""The version lives in `reconciler/__init__.py`; everything that must repeat it is checked here."""

from __future__ import annotations

from importlib.metadata import version

import yaml

from reconciler import __version__
from tests.deploy.conftest import CHART, REPO


def test_installed_distribution_takes_its_version_from_the_package() -> None:
    assert version("reconciler") == __version__


def test_chart_app_version_and_docker_example_follow_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__
    assert f"reconciler:{__version__}" in (REPO / "Dockerfile").read_text()
