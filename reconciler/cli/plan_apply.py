"""`plan` and `apply` without a cluster: each Reconcile is validated, planned (a dry run) and, on
`apply`, run for real, through `reconciler.runner` as the operator does."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from pydantic import SecretStr
from rich.console import Console

from reconciler import crd
from reconciler.claims import ClaimNotes
from reconciler.cli.common import (
    EXIT_CHANGES,
    EXIT_FAILED,
    EXIT_OK,
    STDIN,
    configure_logging,
    fail,
    load_settings,
    note,
    stdout_console,
    stdout_is_tty,
)
from reconciler.cli.manifests import Manifest, metadata_of, read_reconciles, spec_from_manifest
from reconciler.cli.output import (
    ErrorInfo,
    OutputFormat,
    ReconcileResult,
    Steps,
    print_results,
    results_json,
    results_markdown,
)
from reconciler.cli.tokens import DEFAULT_TOKEN_ENV, token_source
from reconciler.credentials import TokenSource
from reconciler.errors import ReconcileError
from reconciler.integrations.base import RunOutcome
from reconciler.models.base import Action
from reconciler.models.spec import ReconcileSpec
from reconciler.runner import run_integration
from reconciler.settings import Settings


def _stdin_is_tty() -> bool:
    return sys.stdin.isatty()


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
    doc, metadata = manifest.doc, metadata_of(manifest.doc)
    raw_spec: dict[str, Any] = doc["spec"] if isinstance(doc.get("spec"), dict) else {}
    result = ReconcileResult(
        namespace=str(metadata.get("namespace") or namespace),
        name=str(metadata.get("name") or metadata.get("generateName") or ""),
        integration=str(raw_spec.get("integration", "")),
        dry_run=raw_spec.get("dryRun") is True,
    )
    prepared = Prepared(manifest, result)
    try:
        spec = spec_from_manifest(doc, crd_doc)
        token = tokens.read_token(result.namespace, spec.credentials.secret_ref)
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
        fail("only one of -f and --secret-file can read stdin")
    settings = load_settings()
    crd_doc = crd.load_crd()
    manifests = read_reconciles(files, crd_doc)
    tokens = token_source(token_env, secret_file)
    prepared: list[Prepared] = []
    with Steps(len(manifests), stdout_is_tty() and not verbose) as steps:
        for manifest in manifests:
            steps.start(f"planning {manifest.source}")
            prepared.append(prepare(manifest, tokens, settings, crd_doc, namespace))
            steps.advance()
    return prepared, settings


def _emit(results: list[ReconcileResult], output: OutputFormat, title: str) -> None:
    if output is OutputFormat.JSON:
        for result in results:
            if result.note:
                note(f"{result.key}: {result.note}")
        typer.echo(results_json(results))
    elif output is OutputFormat.MARKDOWN:
        typer.echo(results_markdown(results, title), nl=False)
    else:
        print_results(stdout_console(), results)


def _plan_exit_code(results: list[ReconcileResult]) -> int:
    if any(result.error is not None for result in results):
        return EXIT_FAILED
    return EXIT_CHANGES if any(result.actions for result in results) else EXIT_OK


def _confirm(yes: bool, stdin_taken: bool) -> None:
    if yes:
        return
    if stdin_taken or not _stdin_is_tty():
        fail("refusing to apply without --yes: stdin is not a terminal to confirm on; nothing was applied")
    if not typer.confirm("Apply these changes?", default=False):
        fail("aborted; nothing was applied")


# --- the commands ---

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
    configure_logging(verbose)
    prepared, _ = _plan_all(files, token_env, secret_file, namespace, verbose)
    results = [p.result for p in prepared]
    _emit(results, output, "Reconcile plan")
    raise typer.Exit(_plan_exit_code(results))


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
    configure_logging(verbose)
    prepared, settings = _plan_all(files, token_env, secret_file, namespace, verbose)
    results = [p.result for p in prepared]
    pending = [p for p in prepared if p.applicable]
    if pending:
        if output is OutputFormat.TABLE:
            print_results(stdout_console(), results)
        elif not yes:
            print_results(Console(stderr=True, highlight=False), results)
        _confirm(yes, stdin_taken=STDIN in files or secret_file == STDIN)
        with Steps(len(pending), stdout_is_tty() and not verbose) as steps:
            for item in pending:
                steps.start(f"applying {item.manifest.source}")
                apply_prepared(item, settings)
                steps.advance()
        if output is OutputFormat.TABLE:
            stdout_console().print("\n[bold]Applied:[/bold]")
    for result in results:
        if result.applied is None:
            result.applied = []
    _emit(results, output, "Reconcile apply")
    if record:
        _record(results, settings)
    raise typer.Exit(EXIT_FAILED if any(result.error is not None for result in results) else EXIT_OK)


def _record(results: list[ReconcileResult], settings: Settings) -> None:
    from reconciler.cli.record import record_results

    try:
        records = record_results(results, settings)
    except ReconcileError as exc:
        fail(f"applied, but could not record the task records: {exc.message}")
    for task in records:
        note(f"recorded task {task.task_id} for {task.reconcile.key}")
