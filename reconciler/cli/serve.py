"""The long-running commands: `run` (the operator), `api` (the status sidecar) and `valkey-stop`."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from reconciler.cli.common import fail, load_settings
from reconciler.logs import setup_logging
from reconciler.settings import Settings, get_settings


def run(
    namespace: Annotated[
        list[str] | None,
        typer.Option("-n", "--namespace", help="Watch this namespace (repeatable); no -n: all namespaces"),
    ] = None,
    all_namespaces: Annotated[
        bool, typer.Option("-A", "--all-namespaces", help="Watch every namespace")
    ] = False,
    standalone: Annotated[bool, typer.Option(help="No peering: for a single replica or a laptop")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging")] = False,
    liveness: Annotated[
        str | None, typer.Option(help="Serve Kopf's liveness probe, e.g. http://0.0.0.0:8081/healthz")
    ] = None,
    selector: Annotated[
        str | None,
        typer.Option(
            "--selector",
            "-l",
            help="Shard: run only Reconciles with these labels, e.g. reconciler.dev/shard=a "
            "(RECONCILER_SHARD_SELECTOR; docs/scaling.md)",
        ),
    ] = None,
) -> None:
    """Run the operator against the current kube context (in-cluster, KUBECONFIG, ~/.kube/config).

    Without -n or -A it watches all namespaces.

    It first checks the cluster: exit status 1 if it cannot log in or reach it in time.
    """
    if selector is not None:
        # The handlers read it from the environment when they register (get_settings()).
        os.environ["RECONCILER_SHARD_SELECTOR"] = selector
        get_settings.cache_clear()
    settings = load_settings()
    if namespace and all_namespaces:
        raise typer.BadParameter("use either -n NAMESPACE or -A, not both")
    from reconciler_operator.affinity import PinError
    from reconciler_operator.main import run_operator
    from reconciler_operator.preflight import ClusterUnreachable, check_cluster

    try:  # before logging is set up: a failure is one line, not the HTTP client's request log
        check_cluster(settings.cluster_connect_timeout_seconds)
    except ClusterUnreachable as exc:
        fail(str(exc))
    setup_logging("DEBUG" if verbose else settings.log_level)
    try:
        run_operator(
            namespaces=list(namespace or []),
            clusterwide=all_namespaces or not namespace,
            standalone=standalone,
            liveness_endpoint=liveness,
        )
    except PinError as exc:
        fail(str(exc))
    finally:
        if settings.valkey_url is None:
            _stop_own_embedded_valkey(settings)


def _stop_own_embedded_valkey(settings: Settings) -> None:
    """Stop the embedded Valkey this process started, unless a sidecar still listens on it."""
    from reconciler.cache.embedded import stop_embedded_valkey_started_here
    from reconciler.tasks import FINISHED_CHANNEL

    if stop_embedded_valkey_started_here(settings.runtime_dir, unless_subscribed=FINISHED_CHANNEL):
        logging.getLogger(__name__).info("stopped the embedded Valkey this operator started")


def api(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on", min=1, max=65535)] = 8080,
    insecure: Annotated[
        bool, typer.Option(help="Allow RECONCILER_API_AUTH=none on a non-loopback address")
    ] = False,
) -> None:
    """Run the status sidecar (async FastAPI on uvicorn); RECONCILER_API_AUTH says who may read it."""
    import uvicorn

    settings = load_settings()
    setup_logging(settings.log_level)
    from reconciler_api.app import create_app
    from reconciler_api.auth import AuthConfigError, is_loopback, resolve_mode

    try:
        mode = resolve_mode(settings)
        if mode == "none" and not is_loopback(host) and not insecure:
            raise AuthConfigError(
                f"no authentication (RECONCILER_API_AUTH=none) on {host}: anyone who reaches it reads every "
                "task; set RECONCILER_API_AUTH=kubernetes or a RECONCILER_API_TOKEN, or pass --insecure"
            )
        app_ = create_app(settings)
    except AuthConfigError as exc:
        fail(f"the sidecar will not start: {exc}")
    logging.getLogger(__name__).info("sidecar authentication: %s", mode)
    uvicorn.run(app_, host=host, port=port, log_level=settings.log_level.lower(), access_log=False)


def valkey_stop() -> None:
    """Stop the embedded Valkey that `run`/`api` start when RECONCILER_VALKEY_URL is unset."""
    from reconciler.cache.embedded import stop_embedded_valkey

    stopped = stop_embedded_valkey(get_settings().runtime_dir)
    typer.echo("stopped" if stopped else "not running")
