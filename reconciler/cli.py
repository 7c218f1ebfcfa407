"""The `reconciler` command: `run` (operator), `api` (sidecar), cluster-less `plan`/`apply`, and `status`."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Protocol

import typer
import yaml
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from typer.core import TyperGroup

from reconciler import crd
from reconciler.claims import ClaimNotes
from reconciler.cli_output import (
    ErrorInfo,
    OutputFormat,
    ReconcileResult,
    StatusFormat,
    print_results,
    print_task,
    results_json,
    results_markdown,
    task_json,
)
from reconciler.errors import CredentialsNotFound, InvalidSpec, ReconcileError
from reconciler.logs import redact, register_secret, setup_logging
from reconciler.models.base import Action
from reconciler.models.spec import ReconcileSpec, SecretRef
from reconciler.models.task import TaskRecord, TaskStatus
from reconciler.runner import RunOutcome, parse_spec, run_integration
from reconciler.settings import Settings, get_settings
from reconciler.tasks import is_task_id

if TYPE_CHECKING:
    import httpx


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CHANGES = 2
EXIT_UNFINISHED = 3


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


STDIN = "-"
DEFAULT_TOKEN_ENV = "RECONCILER_TOKEN"  # noqa: S105 - the name of a variable, not a token

CLIENT_LOGGERS = ("reconciler", "slack_sdk", "gitlab", "httpx")
"""Loggers `--verbose` turns to DEBUG (the root handler redacts tokens)."""


@app.command()
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
    settings = _settings()
    if namespace and all_namespaces:
        raise typer.BadParameter("use either -n NAMESPACE or -A, not both")
    from reconciler_operator.main import run_operator
    from reconciler_operator.preflight import ClusterUnreachable, check_cluster

    try:  # before logging is set up: a failure is one line, not the HTTP client's request log
        check_cluster(settings.cluster_connect_timeout_seconds)
    except ClusterUnreachable as exc:
        _fail(str(exc))
    setup_logging("DEBUG" if verbose else settings.log_level)
    try:
        run_operator(
            namespaces=list(namespace or []),
            clusterwide=all_namespaces or not namespace,
            standalone=standalone,
            liveness_endpoint=liveness,
        )
    finally:
        if settings.valkey_url is None:
            _stop_own_embedded_valkey(settings)


def _stop_own_embedded_valkey(settings: Settings) -> None:
    """Stop the embedded Valkey this process started, unless a sidecar still listens on it."""
    from reconciler.cache.embedded import stop_embedded_valkey_started_here
    from reconciler.tasks import FINISHED_CHANNEL

    if stop_embedded_valkey_started_here(settings.runtime_dir, unless_subscribed=FINISHED_CHANNEL):
        logging.getLogger(__name__).info("stopped the embedded Valkey this operator started")


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on", min=1, max=65535)] = 8080,
    insecure: Annotated[
        bool, typer.Option(help="Allow RECONCILER_API_AUTH=none on a non-loopback address")
    ] = False,
) -> None:
    """Run the status sidecar (async FastAPI on uvicorn); RECONCILER_API_AUTH says who may read it."""
    import uvicorn

    settings = _settings()
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
        _fail(f"the sidecar will not start: {exc}")
    logging.getLogger(__name__).info("sidecar authentication: %s", mode)
    uvicorn.run(app_, host=host, port=port, log_level=settings.log_level.lower(), access_log=False)


@app.command("valkey-stop")
def valkey_stop() -> None:
    """Stop the embedded Valkey that `run`/`api` start when RECONCILER_VALKEY_URL is unset."""
    from reconciler.cache.embedded import stop_embedded_valkey

    stopped = stop_embedded_valkey(get_settings().runtime_dir)
    typer.echo("stopped" if stopped else "not running")


# --- shared helpers ---


def _fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print an error (tokens redacted) on stderr and exit."""
    typer.echo(f"error: {redact(message)}", err=True)
    raise typer.Exit(code)


def _note(message: str) -> None:
    typer.echo(f"note: {redact(message)}", err=True)


def _stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def _stdin_is_tty() -> bool:
    return sys.stdin.isatty()


def _configure_logging(verbose: bool) -> None:
    """Warnings only; `--verbose`: DEBUG for the client layer. Tokens are redacted either way."""
    setup_logging("WARNING")
    for name in CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.NOTSET)


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        _fail(f"bad RECONCILER_* environment: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")


def _stdout_console() -> Console:
    return Console(highlight=False, soft_wrap=False, width=None if _stdout_is_tty() else 160)


class _Steps:
    """A progress bar on stderr while Reconciles are planned or applied; silent unless on a terminal."""

    def __init__(self, total: int, enabled: bool) -> None:
        console = Console(stderr=True)
        self._progress: Progress | None = None
        if enabled and console.is_terminal:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
        self._task = self._progress.add_task("", total=total) if self._progress else None

    def __enter__(self) -> _Steps:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start(self, description: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=description)

    def advance(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task)


# --- reading manifests ---


@dataclass(frozen=True)
class Manifest:
    source: str
    """Where it came from, e.g. `rec.yaml (document 2)`."""
    doc: dict[str, Any]


def _expand(paths: list[str]) -> Iterator[str]:
    """Files as given; a directory stands for its *.yaml, *.yml and *.json files (like kubectl -f DIR)."""
    for path in paths:
        if path != STDIN and Path(path).is_dir():
            found = sorted(p for p in Path(path).iterdir() if p.suffix in (".yaml", ".yml", ".json"))
            yield from (str(p) for p in found)
        else:
            yield path


def _read_documents(path: str) -> list[Any]:
    """Every document of a YAML file (`-`: stdin); items of a `kind: List` count as documents."""
    try:
        if path == STDIN:
            raw = crd.load_yaml_text(sys.stdin)
        else:
            with open(path, encoding="utf-8") as stream:
                raw = crd.load_yaml_text(stream)
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}")
    except yaml.YAMLError as exc:
        _fail(f"{path} is not valid YAML: {exc}")
    docs: list[Any] = []
    for doc in raw:
        is_list = isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list)
        docs += doc["items"] if is_list else [doc]
    return docs


def _metadata(doc: dict[str, Any]) -> dict[str, Any]:
    metadata = doc.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def read_reconciles(paths: list[str], crd_doc: dict[str, Any]) -> list[Manifest]:
    """The Reconcile documents of `paths`; other objects (Secrets, ...) are skipped with a note."""
    manifests: list[Manifest] = []
    for path in _expand(paths):
        for index, doc in enumerate(_read_documents(path), start=1):
            where = f"{'stdin' if path == STDIN else path} (document {index})"
            if not isinstance(doc, dict) or not doc.get("kind"):
                _fail(f"{where} is not a Kubernetes object: it has no kind")
            if not crd.is_reconcile(doc, crd_doc):
                shown = f"{doc.get('kind')} {_metadata(doc).get('name', '')!s}"
                hint = " (pass it with --secret-file to use its token)" if doc.get("kind") == "Secret" else ""
                _note(f"skipping {shown} in {where}: not a Reconcile{hint}")
                continue
            manifests.append(Manifest(where, doc))
    if not manifests:
        _fail(f"no Reconcile found in {', '.join(paths)}")
    return manifests


# --- credentials without a cluster ---


class TokenSource(Protocol):
    def token_for(self, namespace: str, ref: SecretRef) -> SecretStr: ...


def _accept_token(value: str) -> SecretStr:
    register_secret(value)
    return SecretStr(value)


@dataclass(frozen=True)
class EnvToken:
    """The token from an environment variable (`--token-env`), whatever the secretRef says."""

    variable: str

    def token_for(self, namespace: str, ref: SecretRef) -> SecretStr:
        value = os.environ.get(self.variable, "").strip()
        if not value:
            raise CredentialsNotFound(
                f"environment variable {self.variable} is not set or empty; export the token of Secret "
                f"{namespace}/{ref.name} (key {ref.key!r}) there, or pass --secret-file"
            )
        return _accept_token(value)


@dataclass(frozen=True)
class SecretFile:
    """Tokens from a Secret manifest (`--secret-file`): `stringData`, or `data` (base64)."""

    path: str
    secrets: list[dict[str, Any]]

    @classmethod
    def load(cls, path: str) -> SecretFile:
        secrets = [d for d in _read_documents(path) if isinstance(d, dict) and d.get("kind") == "Secret"]
        if not secrets:
            _fail(f"{path} holds no Secret manifest (kind: Secret)")
        return cls(path, secrets)

    def token_for(self, namespace: str, ref: SecretRef) -> SecretStr:
        secret = self._find(namespace, ref)
        where = f"Secret {ref.name} in {self.path}"
        token = _secret_value(secret, ref.key, where).strip()
        if not token:
            raise CredentialsNotFound(f"{where} key {ref.key!r} is empty")
        return _accept_token(token)

    def _find(self, namespace: str, ref: SecretRef) -> dict[str, Any]:
        named = [s for s in self.secrets if _metadata(s).get("name") == ref.name]
        if not named:
            have = ", ".join(sorted(str(_metadata(s).get("name")) for s in self.secrets))
            raise CredentialsNotFound(
                f"{self.path} holds no Secret named {ref.name!r} (it has: {have}); "
                "spec.credentials.secretRef.name must name the Secret"
            )
        for secret in named:
            if _metadata(secret).get("namespace") in (None, namespace):
                return secret
        raise CredentialsNotFound(
            f"Secret {ref.name!r} in {self.path} is in namespace {_metadata(named[0]).get('namespace')!r}, "
            f"not in the Reconcile's namespace {namespace!r}"
        )


def _secret_value(secret: dict[str, Any], key: str, where: str) -> str:
    """`stringData[key]` (it wins, as on the API server) or the decoded `data[key]`."""
    string_data, data = secret.get("stringData") or {}, secret.get("data") or {}
    if not isinstance(string_data, dict) or not isinstance(data, dict):
        raise CredentialsNotFound(f"{where}: data and stringData must be maps")
    if key in string_data:
        return str(string_data[key])
    if key not in data:
        keys = ", ".join(sorted({str(k) for k in (*string_data, *data)})) or "none"
        raise CredentialsNotFound(
            f"{where} has no key {key!r} (it has: {keys}); set spec.credentials.secretRef.key"
        )
    try:
        return base64.b64decode("".join(str(data[key]).split()), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CredentialsNotFound(
            f"{where} key {key!r} is not valid base64-encoded UTF-8 text (put plain text under stringData)"
        ) from None


def _token_source(token_env: str, secret_file: str | None) -> TokenSource:
    return SecretFile.load(secret_file) if secret_file else EnvToken(token_env)


# --- planning and applying (through reconciler.runner, as the operator does) ---


@dataclass
class Prepared:
    """One Reconcile after validation and a dry run; `spec`/`token` are set when it may be applied."""

    manifest: Manifest
    result: ReconcileResult
    spec: ReconcileSpec | None = None
    token: SecretStr | None = None

    @property
    def applicable(self) -> bool:
        spec = self.spec
        return (
            spec is not None
            and self.token is not None
            and self.result.error is None
            and bool(self.result.actions)
            and not spec.dry_run
            and not spec.suspend
        )


def validate_manifest(doc: dict[str, Any], crd_doc: dict[str, Any]) -> ReconcileSpec:
    """What `kubectl apply` would reject (the CRD's schema, in the API server's words and field paths), then
    what the operator would (the spec model, which also enforces the CRD's CEL rules). Raises InvalidSpec."""
    errors = crd.validate_manifest(doc, crd_doc)
    if errors:
        raise InvalidSpec(crd.describe(errors))
    return parse_spec(doc.get("spec"))


def _error_info(error: ReconcileError, failed: Action | None = None) -> ErrorInfo:
    where = f" (while applying {failed.type} on {failed.target})" if failed is not None else ""
    return ErrorInfo(error.reason, error.message + where)


def _record_outcome(result: ReconcileResult, outcome: RunOutcome) -> None:
    result.actions = [action.to_record() for action in outcome.actions]
    if outcome.applied or not outcome.dry_run:
        result.applied = [action.to_record() for action in outcome.applied]
    if outcome.error is not None:
        result.error = _error_info(outcome.error, outcome.failed_action)


def prepare(
    manifest: Manifest, tokens: TokenSource, settings: Settings, crd_doc: dict[str, Any], namespace: str
) -> Prepared:
    """Validate one Reconcile, find its token and plan it (dry run)."""
    doc, metadata = manifest.doc, _metadata(manifest.doc)
    raw_spec: dict[str, Any] = doc["spec"] if isinstance(doc.get("spec"), dict) else {}
    result = ReconcileResult(
        namespace=str(metadata.get("namespace") or namespace),
        name=str(metadata.get("name") or metadata.get("generateName") or ""),
        integration=str(raw_spec.get("integration", "")),
        dry_run=raw_spec.get("dryRun") is True,
    )
    prepared = Prepared(manifest, result)
    try:
        spec = validate_manifest(doc, crd_doc)
        token = tokens.token_for(result.namespace, spec.credentials.secret_ref)
    except ReconcileError as exc:
        result.error = _error_info(exc)
        return prepared
    prepared.spec, prepared.token = spec, token
    if spec.suspend:
        result.note = "spec.suspend is true: the operator does not run it, and apply leaves it alone"
    elif spec.dry_run:
        result.note = "spec.dryRun is true: the operator only plans it, and apply does too"
    claim, notes = claim_notes(settings).claim_for(result.namespace, result.name)
    _record_outcome(result, run_integration(spec, token, settings, dry_run=True, claim=claim))
    if notes:
        result.note = "; ".join(filter(None, [result.note, *notes]))
    return prepared


_CLAIM_NOTES: dict[str | None, ClaimNotes] = {}


def claim_notes(settings: Settings) -> ClaimNotes:
    """One Valkey connection (or none, when no RECONCILER_VALKEY_URL is set) for the whole command."""
    if settings.valkey_url not in _CLAIM_NOTES:
        timeout = min(settings.cache_timeout_seconds, 1.0)
        _CLAIM_NOTES[settings.valkey_url] = ClaimNotes(settings.valkey_url, timeout=timeout)
    return _CLAIM_NOTES[settings.valkey_url]


def apply_prepared(prepared: Prepared, settings: Settings) -> None:
    """Run the integration for real (it plans again from the live state, then applies)."""
    if not prepared.applicable or prepared.spec is None or prepared.token is None:
        return
    _record_outcome(prepared.result, run_integration(prepared.spec, prepared.token, settings, dry_run=False))


def _plan_all(
    files: list[str], token_env: str, secret_file: str | None, namespace: str, verbose: bool
) -> tuple[list[Prepared], Settings]:
    if secret_file == STDIN and STDIN in files:
        _fail("only one of -f and --secret-file can read stdin")
    settings = _settings()
    crd_doc = crd.load_crd()
    manifests = read_reconciles(files, crd_doc)
    tokens = _token_source(token_env, secret_file)
    prepared: list[Prepared] = []
    with _Steps(len(manifests), _stdout_is_tty() and not verbose) as steps:
        for manifest in manifests:
            steps.start(f"planning {manifest.source}")
            prepared.append(prepare(manifest, tokens, settings, crd_doc, namespace))
            steps.advance()
    return prepared, settings


def _emit(results: list[ReconcileResult], output: OutputFormat, title: str) -> None:
    if output is OutputFormat.JSON:
        for result in results:
            if result.note:
                _note(f"{result.key}: {result.note}")
        typer.echo(results_json(results))
    elif output is OutputFormat.MARKDOWN:
        typer.echo(results_markdown(results, title), nl=False)
    else:
        print_results(_stdout_console(), results)


def _plan_exit_code(results: list[ReconcileResult]) -> int:
    if any(result.error is not None for result in results):
        return EXIT_FAILED
    return EXIT_CHANGES if any(result.actions for result in results) else EXIT_OK


def _confirm(yes: bool, stdin_taken: bool) -> None:
    if yes:
        return
    if stdin_taken or not _stdin_is_tty():
        _fail("refusing to apply without --yes: stdin is not a terminal to confirm on; nothing was applied")
    if not typer.confirm("Apply these changes?", default=False):
        _fail("aborted; nothing was applied")


# --- plan, apply ---

FilesOption = Annotated[
    list[str],
    typer.Option(
        "-f", "--filename", help="Manifest file or folder (YAML, several documents); `-` is stdin; repeatable"
    ),
]
TokenEnvOption = Annotated[
    str, typer.Option("--token-env", metavar="VAR", help="Environment variable with the integration's token")
]
SecretFileOption = Annotated[
    str | None,
    typer.Option(
        "--secret-file",
        metavar="PATH",
        help="A Secret manifest to take the token from (the Reconcile's secretRef name and key)",
    ),
]
NamespaceOption = Annotated[
    str, typer.Option("-n", "--namespace", help="Namespace of manifests that do not set metadata.namespace")
]
OutputOption = Annotated[OutputFormat, typer.Option("-o", "--output", help="table, json or markdown")]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Debug logs of the Slack/GitLab clients (tokens redacted)")
]


@app.command()
def plan(
    files: FilesOption,
    token_env: TokenEnvOption = DEFAULT_TOKEN_ENV,
    secret_file: SecretFileOption = None,
    namespace: NamespaceOption = "default",
    output: OutputOption = OutputFormat.TABLE,
    verbose: VerboseOption = False,
) -> None:
    """Show what Reconcile manifests would change, without a cluster; never writes to Slack or GitLab.

    Exit status: 0 nothing would change, 2 changes are planned, 1 an error (e.g. InvalidSpec).
    """
    _configure_logging(verbose)
    prepared, _ = _plan_all(files, token_env, secret_file, namespace, verbose)
    results = [p.result for p in prepared]
    _emit(results, output, "Reconcile plan")
    raise typer.Exit(_plan_exit_code(results))


@app.command()
def apply(
    files: FilesOption,
    token_env: TokenEnvOption = DEFAULT_TOKEN_ENV,
    secret_file: SecretFileOption = None,
    namespace: NamespaceOption = "default",
    output: OutputOption = OutputFormat.TABLE,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking")] = False,
    record: Annotated[
        bool,
        typer.Option(
            "--record",
            help="Also keep each run as a task record in Valkey (RECONCILER_VALKEY_URL, or the embedded "
            "one), so `reconciler status` and the sidecar show it",
        ),
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Plan Reconcile manifests, then apply the changes (manifests with dryRun or suspend: plan only).

    Asks for confirmation on a terminal; elsewhere `--yes` is required.

    Exit status: 0 success, 1 failure.
    """
    _configure_logging(verbose)
    prepared, settings = _plan_all(files, token_env, secret_file, namespace, verbose)
    results = [p.result for p in prepared]
    pending = [p for p in prepared if p.applicable]
    if pending:
        if output is OutputFormat.TABLE:
            print_results(_stdout_console(), results)
        elif not yes:
            print_results(Console(stderr=True, highlight=False), results)
        _confirm(yes, stdin_taken=STDIN in files or secret_file == STDIN)
        with _Steps(len(pending), _stdout_is_tty() and not verbose) as steps:
            for item in pending:
                steps.start(f"applying {item.manifest.source}")
                apply_prepared(item, settings)
                steps.advance()
        if output is OutputFormat.TABLE:
            _stdout_console().print("\n[bold]Applied:[/bold]")
    for result in results:
        if result.applied is None:
            result.applied = []
    _emit(results, output, "Reconcile apply")
    if record:
        _record(results, settings)
    raise typer.Exit(EXIT_FAILED if any(result.error is not None for result in results) else EXIT_OK)


def _record(results: list[ReconcileResult], settings: Settings) -> None:
    from reconciler.cli_record import record_results

    try:
        records = record_results(results, settings)
    except ReconcileError as exc:
        _fail(f"applied, but could not record the task records: {exc.message}")
    for task in records:
        _note(f"recorded task {task.task_id} for {task.reconcile.key}")


# --- doctor ---


@app.command()
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

    _configure_logging(False)
    ref = REF_PATTERN.match(target) if target else None
    if target and ref is None:
        _fail(f"{target!r} is not rec/NAME")
    found = Target(namespace or "default", ref.group("name")) if ref else None
    checks = run_checks(_settings(), found, namespace)
    typer.echo(render_json(checks) if output is StatusFormat.JSON else render_text(checks))
    raise typer.Exit(EXIT_OK if passed(checks) else EXIT_FAILED)


# --- status, from the sidecar ---

REF_PATTERN = re.compile(r"^(?:rec|recs|reconcile|reconciles)(?:\.reconciler\.dev)?/(?P<name>[^/]+)$", re.I)


def _sidecar(api_url: str, timeout: float) -> httpx.Client:
    import httpx

    headers = {"Accept": "application/json"}
    token = os.environ.get("RECONCILER_API_TOKEN", "").strip() or _kube_bearer_token()
    if token:
        register_secret(token)
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=api_url.rstrip("/"), headers=headers, timeout=timeout)


def _kube_bearer_token() -> str | None:
    """The current kube context's bearer token, for a sidecar with RECONCILER_API_AUTH=kubernetes."""
    from reconciler.doctor.kube import KubeUnavailable, login

    try:
        return login().token or None
    except KubeUnavailable:
        return None


def _get(client: httpx.Client, path: str, wait: float | None = None) -> httpx.Response:
    import httpx

    try:
        return client.get(path, params={"timeout_seconds": wait} if wait else None)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the sidecar at {client.base_url}: {type(exc).__name__}: {exc}")


def _answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a 200 answer; any other answer ends the command with exit status 1."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = str(body.get("detail", "")) if isinstance(body, dict) else response.text[:200]
    status = response.status_code
    if status == 200 and isinstance(body, dict):
        return body
    if status == 401:
        _fail(
            f"the sidecar refused the request (HTTP 401: {detail}); set RECONCILER_API_TOKEN to its token, "
            "or use a kube context whose bearer token the cluster accepts"
        )
    if status == 503:
        _fail(f"the sidecar cannot reach its cache (HTTP 503): {detail}")
    _fail(f"{detail or 'unexpected answer'} (HTTP {status} from {response.request.url.path})")


def _task(body: dict[str, Any]) -> TaskRecord:
    try:
        return TaskRecord.model_validate(body)
    except ValidationError as exc:
        _fail(f"the sidecar sent a task record this version cannot read: {exc.errors()[0]['msg']}")


def _fetch_task(client: httpx.Client, task_id: str, wait: float | None) -> tuple[TaskRecord, bool]:
    """The record, waiting up to `wait` seconds for it to finish; True when it is still unfinished."""
    response = _get(client, f"/reconcile/{task_id}", wait)
    if response.status_code == 408:
        return _task(_answer(_get(client, f"/reconcile/{task_id}"))), True
    record = _task(_answer(response))
    return record, not record.status.finished


def _status_exit(record: TaskRecord, unfinished: bool, wait: float | None) -> int:
    if unfinished:
        waited = f" after waiting {wait:g}s" if wait else ""
        _note(f"task {record.task_id} is still {record.status.value}{waited}")
        return EXIT_UNFINISHED
    return EXIT_OK if record.status is TaskStatus.SUCCESS else EXIT_FAILED


@app.command()
def status(
    target: Annotated[str, typer.Argument(help="A task id (32 hex digits), or rec/NAME (reconcile/NAME)")],
    namespace: Annotated[str, typer.Option("-n", "--namespace", help="Namespace of rec/NAME")] = "default",
    api_url: Annotated[
        str, typer.Option("--api", envvar="RECONCILER_API_URL", help="The sidecar's base URL")
    ] = "http://127.0.0.1:8080",
    wait: Annotated[
        float | None,
        typer.Option("--wait", metavar="SECONDS", help="Wait up to this long (<= 300s) for it to finish"),
    ] = None,
    output: Annotated[
        StatusFormat, typer.Option("-o", "--output", help="table or json")
    ] = StatusFormat.TABLE,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Debug logs of the HTTP calls to the sidecar (tokens redacted)"),
    ] = False,
) -> None:
    """Show a task record from the status sidecar (RECONCILER_API_TOKEN, else the kube context's token).

    Exit status: 0 the task succeeded, 1 it failed or the sidecar said no (404, 401, 503...), 3 unfinished.
    """
    _configure_logging(verbose)
    if wait is not None and not 0 < wait <= 300:
        _fail("--wait must be more than 0 and at most 300 seconds")
    ref = REF_PATTERN.match(target)
    if ref is None and not is_task_id(target):
        _fail(f"{target!r} is neither a task id (32 hex digits) nor rec/NAME")
    with _sidecar(api_url, timeout=(wait or 0) + 30) as client:
        if ref is None:
            record, unfinished = _fetch_task(client, target, wait)
            payload = task_json(record)
            recent: list[str] | None = None
        else:
            record, unfinished, recent = _fetch_latest(client, namespace, ref.group("name"), wait)
            payload = {
                "namespace": namespace,
                "name": ref.group("name"),
                "latest": task_json(record),
                "recent": recent,
            }
    if output is StatusFormat.JSON:
        typer.echo(redact(_json_dumps(payload)))
    else:
        print_task(_stdout_console(), record, recent)
    raise typer.Exit(_status_exit(record, unfinished, wait))


def _fetch_latest(
    client: httpx.Client, namespace: str, name: str, wait: float | None
) -> tuple[TaskRecord, bool, list[str]]:
    body = _answer(_get(client, f"/reconciles/{namespace}/{name}"))
    recent = [str(task_id) for task_id in body.get("recent") or []]
    if not isinstance(body.get("latest"), dict):
        latest = recent[0] if recent else "?"
        _fail(f"the latest task of Reconcile {namespace}/{name} ({latest}) has expired from the cache")
    record = _task(body["latest"])
    if wait and not record.status.finished:
        record, unfinished = _fetch_task(client, record.task_id, wait)
        return record, unfinished, recent
    return record, not record.status.finished, recent


def _json_dumps(payload: Any) -> str:
    import json

    return json.dumps(payload, indent=2)


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
