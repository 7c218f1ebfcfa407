"""What every `reconciler` command shares: exit codes, error and note lines, settings, logging.

Every line a command prints on stderr goes through `redact()`, so no token reaches a terminal or a CI log.
"""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from reconciler.integrations.registry import INTEGRATIONS
from reconciler.logs import redact, setup_logging
from reconciler.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CHANGES = 2
EXIT_UNFINISHED = 3

STDIN = "-"

SHARED_LOGGERS = ("reconciler", "httpx")
"""Loggers `--verbose` turns to DEBUG (the root handler redacts tokens), with each integration's
client-library loggers (`Integration.loggers`)."""


def client_loggers() -> tuple[str, ...]:
    return (*SHARED_LOGGERS, *(name for i in INTEGRATIONS.values() for name in i.loggers))


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print an error (tokens redacted) on stderr and exit."""
    typer.echo(f"error: {redact(message)}", err=True)
    raise typer.Exit(code)


def note(message: str) -> None:
    typer.echo(f"note: {redact(message)}", err=True)


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def configure_logging(verbose: bool) -> None:
    """Warnings only; `--verbose`: DEBUG for the client layer. Tokens are redacted either way."""
    setup_logging("WARNING")
    for name in client_loggers():
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.NOTSET)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        fail(f"bad RECONCILER_* environment: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")


def stdout_console() -> Console:
    return Console(highlight=False, soft_wrap=False, width=None if stdout_is_tty() else 160)
