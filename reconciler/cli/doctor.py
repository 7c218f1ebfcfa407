"""`doctor`: one line per check of the cluster, the CRD, the operator's RBAC, Valkey and a Reconcile."""

from __future__ import annotations

from typing import Annotated

import typer

from reconciler.cli.common import EXIT_FAILED, EXIT_OK, configure_logging, fail, load_settings
from reconciler.cli.output import StatusFormat
from reconciler.cli.status import REF_PATTERN


def doctor(
    target: Annotated[
        str | None, typer.Argument(help="Also check one Reconcile: rec/NAME (its Secret, token and scopes)")
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("-n", "--namespace", help="Namespace of rec/NAME, and of the RBAC checks")
    ] = None,
    output: Annotated[
        StatusFormat, typer.Option("-o", "--output", help="table or json")
    ] = StatusFormat.TABLE,
) -> None:
    """Check the cluster, the CRD, the operator's RBAC, Valkey and (with rec/NAME) a Reconcile's
    Secret, token and scopes: one line per check. Run it with the operator's credentials (in its
    pod) to check the operator's own RBAC.

    Exit status: 0 every check passed (skipped checks and warnings do not fail), 1 otherwise.
    """
    from reconciler.doctor import passed, render_json, render_text
    from reconciler.doctor.checks import Target, run_checks

    configure_logging(False)
    ref = REF_PATTERN.match(target) if target else None
    if target and ref is None:
        fail(f"{target!r} is not rec/NAME")
    found = Target(namespace or "default", ref.group("name")) if ref else None
    checks = run_checks(load_settings(), found, namespace)
    typer.echo(render_json(checks) if output is StatusFormat.JSON else render_text(checks))
    raise typer.Exit(EXIT_OK if passed(checks) else EXIT_FAILED)
