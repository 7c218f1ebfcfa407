"""The `reconciler` command: `run` (operator), `api` (sidecar), cluster-less `plan`/`apply`, and `status`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from reconciler.cli.common import EXIT_FAILED
from reconciler.cli.doctor import doctor
from reconciler.cli.plan_apply import apply, plan
from reconciler.cli.serve import api, run, valkey_stop
from reconciler.cli.status import status

_USAGE_ERROR: type[Exception] = next(
    base for base in typer.BadParameter.__mro__ if base.__name__ == "UsageError"
)
"""click's UsageError, whichever click Typer uses (its vendored copy or the click package)."""


class _Group(TyperGroup):
    """Usage errors of `plan`, `apply` and `status` exit with 1, not click's 2: for `plan`, 2 means
    "changes are planned", and a CI job must not read a typo in its command line as that."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _USAGE_ERROR as exc:
            if ctx.invoked_subcommand in ("plan", "apply", "status", "doctor"):
                exc.exit_code = EXIT_FAILED  # type: ignore[attr-defined]
            raise


app = typer.Typer(cls=_Group, no_args_is_help=True, add_completion=False, help=__doc__)

app.command()(run)
app.command()(api)
app.command("valkey-stop")(valkey_stop)
app.command()(plan)
app.command()(apply)
app.command()(doctor)
app.command()(status)


def plain_metavars(command: Any) -> Any:
    """Help that says `NAMESPACE` and `table|json`, not Typer's `<list[str]>` or `<bool>` on flags."""
    for sub in getattr(command, "commands", {}).values():
        plain_metavars(sub)
    for param in getattr(command, "params", []):
        if type(param).__name__ == "TyperArgument":  # its name is shown already: no `<str>` after it
            param.display_type_rich = lambda ctx: None
            continue
        if param.metavar is not None:
            continue
        described = getattr(param, "type_descriptor", None)
        choices = described.choices if described is not None and described.is_choice else None
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif choices:
            param.metavar = "|".join(str(getattr(c, "value", c)) for c in choices)
        else:
            param.metavar = str(param.name).upper()
    return command


def main() -> None:
    # Installed as a kubectl plugin too (`kubectl-reconciler`): usage lines then say `kubectl reconciler`.
    plugin = Path(sys.argv[0]).name == "kubectl-reconciler"
    command = plain_metavars(typer.main.get_command(app))
    command(prog_name="kubectl reconciler" if plugin else None)
