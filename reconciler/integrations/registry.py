"""Every integration the operator knows, by `spec.integration`.

Integrations are found through the `reconciler.integrations` entry-point group, the built-ins as any
other: a new integration is one folder (a package with an `Integration` subclass) plus one line
under `[project.entry-points."reconciler.integrations"]` in its distribution's pyproject.toml,
`<spec.integration> = "<package>:<class>"`. Everything else (the CRD's enum, block and CEL rules,
token redaction, client loggers) is read from the `Integration` class.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from reconciler.integrations.base import Integration

ENTRY_POINT_GROUP = "reconciler.integrations"


def load(found: Iterable[EntryPoint]) -> dict[str, Integration[Any]]:
    """One instance of each entry point's Integration class, by name (names must match the class's)."""
    integrations: dict[str, Integration[Any]] = {}
    for entry in found:
        where = f"entry point {entry.name} = {entry.value!r} (group {ENTRY_POINT_GROUP})"
        loaded = entry.load()
        if not (isinstance(loaded, type) and issubclass(loaded, Integration)):
            raise TypeError(f"{where} is not an Integration subclass")
        integration = loaded()
        if integration.name != entry.name:
            raise ValueError(f"{where} names a class whose name is {integration.name!r}")
        if entry.name in integrations:
            raise ValueError(f"{where}: another distribution already registers {entry.name!r}")
        integrations[entry.name] = integration
    return integrations


def discover() -> dict[str, Integration[Any]]:
    """The installed integrations, by name (sorted: the CRD is the same whatever the install order)."""
    integrations = load(sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda entry: entry.name))
    if not integrations:
        raise RuntimeError(
            f"no integration is registered in the entry-point group {ENTRY_POINT_GROUP}: reinstall "
            "reconciler (`pip install -e .` in a checkout) so its installed metadata is current"
        )
    return integrations


INTEGRATIONS: dict[str, Integration[Any]] = discover()
