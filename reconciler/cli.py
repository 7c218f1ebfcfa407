"""The `reconciler` command: `run` (operator), `api` (sidecar), and cluster-less `plan`/`apply`."""

from __future__ import annotations

from typing import Annotated

import typer

from reconciler.logs import setup_logging
from reconciler.settings import get_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


@app.command()
def run(
    namespace: Annotated[list[str] | None, typer.Option("-n", "--namespace", help="Watch this namespace (repeatable)")] = None,
    all_namespaces: Annotated[bool, typer.Option("-A", "--all-namespaces", help="Watch every namespace")] = False,
    standalone: Annotated[bool, typer.Option(help="No peering: for a single replica or a laptop")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging")] = False,
    liveness: Annotated[str | None, typer.Option(help="Serve Kopf's liveness probe, e.g. http://0.0.0.0:8081/healthz")] = None,
) -> None:
    """Run the operator against the current kube context (in-cluster, KUBECONFIG, ~/.kube/config)."""
    settings = get_settings()
    setup_logging("DEBUG" if verbose else settings.log_level)
    if namespace and all_namespaces:
        raise typer.BadParameter("use either -n NAMESPACE or -A, not both")
    from reconciler_operator.main import run_operator

    run_operator(namespaces=list(namespace or []), clusterwide=all_namespaces or not namespace,
                 standalone=standalone, liveness_endpoint=liveness)


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on", min=1, max=65535)] = 8080,
) -> None:
    """Run the status sidecar (async FastAPI on uvicorn)."""
    import uvicorn

    settings = get_settings()
    setup_logging(settings.log_level)
    from reconciler_api.app import create_app

    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level.lower(),
                access_log=False)


@app.command("valkey-stop")
def valkey_stop() -> None:
    """Stop the embedded Valkey that `run`/`api` start when RECONCILER_VALKEY_URL is unset."""
    from reconciler.cache.embedded import stop_embedded_valkey

    stopped = stop_embedded_valkey(get_settings().runtime_dir)
    typer.echo("stopped" if stopped else "not running")


def main() -> None:
    app()
