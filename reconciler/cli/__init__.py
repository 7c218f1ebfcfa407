"""The `reconciler` command line (its Typer app is `reconciler.cli.app.app`); `main` is the console script."""

from reconciler.cli.app import main

__all__ = ["main"]
