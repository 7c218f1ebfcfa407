"""Rendering for the `reconciler` command line: plan/apply results, progress and sidecar task records.

Three forms: Rich tables for a terminal, JSON for scripts, Markdown for a merge-request comment.
Every text that may carry a message from Slack, GitLab or the sidecar goes through `redact()`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from reconciler.logs import redact
from reconciler.models.base import ActionRecord
from reconciler.models.task import TaskRecord, TaskStatus

PlanStatus = Literal["changes", "no-changes", "error"]


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"


class StatusFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


@dataclass(frozen=True)
class ErrorInfo:
    reason: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"reason": self.reason, "message": redact(self.message)}


@dataclass
class ReconcileResult:
    """What `plan` (and `apply`) found for one Reconcile manifest."""

    namespace: str
    name: str
    integration: str
    dry_run: bool
    actions: list[ActionRecord] = field(default_factory=list)
    error: ErrorInfo | None = None
    applied: list[ActionRecord] | None = None
    """None for a plan; the actions done, for an apply."""
    note: str = ""
    """Shown with tables and Markdown; on stderr with JSON (which keeps its documented shape)."""

    @property
    def status(self) -> PlanStatus:
        if self.error is not None:
            return "error"
        return "changes" if self.actions else "no-changes"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "namespace": self.namespace,
            "name": self.name,
            "integration": self.integration,
            "dryRun": self.dry_run,
            "status": self.status,
            "actions": [_action_json(action) for action in self.actions],
            "error": self.error.to_json() if self.error is not None else None,
        }
        if self.applied is not None:
            data["applied"] = [_action_json(action) for action in self.applied]
        return data


def _action_json(action: ActionRecord) -> dict[str, str]:
    return {"type": action.type, "target": action.target, "detail": redact(action.detail)}


# --- plan and apply ---


def results_json(results: list[ReconcileResult]) -> str:
    return json.dumps([result.to_json() for result in results], indent=2)


def _summary(result: ReconcileResult) -> str:
    if result.error is not None:
        return f"error: {result.error.reason}"
    count, plural = len(result.actions), "s" if len(result.actions) != 1 else ""
    if result.applied:
        return f"{len(result.applied)} change{'s' if len(result.applied) != 1 else ''} applied"
    if result.applied is not None and count:
        return f"{count} change{plural} planned, none applied"
    return f"{count} change{plural}" if count else "no changes"


def print_results(console: Console, results: list[ReconcileResult]) -> None:
    """A table of actions per Reconcile, and its error if any."""
    for result in results:
        colour = "red" if result.error else "yellow" if result.actions else "green"
        header = f"[bold]{escape(result.key)}[/bold] ({escape(result.integration)})"
        console.print(f"{header}: [{colour}]{escape(_summary(result))}[/{colour}]")
        if result.note:
            console.print(f"  [dim]{escape(result.note)}[/dim]")
        shown = result.applied or result.actions
        if shown:
            console.print(_actions_table(shown))
        if result.error is not None:
            message = escape(redact(result.error.message))
            console.print(f"  [red]{escape(result.error.reason)}[/red]: {message}")
    console.print(escape(_totals(results)))


def _actions_table(actions: list[ActionRecord]) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("Type", no_wrap=True)
    table.add_column("Target", no_wrap=True)
    table.add_column("Detail", overflow="fold")
    for action in actions:
        table.add_row(escape(action.type), escape(action.target), escape(redact(action.detail)))
    return table


def _totals(results: list[ReconcileResult]) -> str:
    statuses: list[str] = [result.status for result in results]
    counts = {status: statuses.count(status) for status in ("changes", "no-changes", "error")}
    return (
        f"{len(results)} Reconcile{'s' if len(results) != 1 else ''}: {counts['changes']} with changes, "
        f"{counts['no-changes']} unchanged, {counts['error']} failed"
    )


def results_markdown(results: list[ReconcileResult], title: str) -> str:
    """Markdown for a merge-request comment: a heading per Reconcile and a table of its actions."""
    lines = [f"## {title}", "", _totals(results)]
    for result in results:
        lines += ["", f"### `{result.key}` ({result.integration}): {_summary(result)}"]
        if result.note:
            lines += ["", f"_{_md_cell(result.note)}_"]
        shown = result.applied or result.actions
        if shown:
            lines += ["", "| Type | Target | Detail |", "| --- | --- | --- |"]
            lines += [
                f"| `{_md_cell(a.type)}` | `{_md_cell(a.target)}` | {_md_cell(redact(a.detail))} |"
                for a in shown
            ]
        if result.error is not None:
            lines += ["", f"> **{result.error.reason}**: {_md_cell(redact(result.error.message))}"]
    return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


# --- sidecar task records ---


def task_json(record: TaskRecord) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(redact(record.model_dump_json()))
    return data


def print_task(console: Console, record: TaskRecord, recent: list[str] | None = None) -> None:
    """The task as a key/value table, then its actions and errors."""
    colour = {TaskStatus.SUCCESS: "green", TaskStatus.FAILED: "red"}.get(record.status, "yellow")
    table = Table(show_header=False, show_edge=False, pad_edge=False)
    table.add_column("Field", style="bold", no_wrap=True)
    table.add_column("Value", overflow="fold")
    rows = [
        ("Task", record.task_id),
        ("Status", f"[{colour}]{record.status.value}[/{colour}]"),
        ("Reconcile", escape(f"{record.reconcile.key} (generation {record.reconcile.generation})")),
        ("Integration", escape(record.integration)),
        ("Dry run", str(record.dry_run).lower()),
        ("Trigger", escape(record.trigger or "-")),
        ("Planned / applied / failed", f"{len(record.actions)} / {record.applied} / {record.failed}"),
        ("Created", _time(record.created_at)),
        ("Started", _time(record.started_at)),
        ("Finished", _time(record.finished_at)),
    ]
    if recent:
        rows.append(("Recent tasks", ", ".join(recent)))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if record.actions:
        console.print(_actions_table(list(record.actions)))
    for error in record.errors:
        console.print(f"[red]{escape(error.reason)}[/red]: {escape(redact(error.message))}")


def _time(value: Any) -> str:
    return value.isoformat() if value is not None else "-"


# --- progress ---


class Steps:
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

    def __enter__(self) -> Steps:
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
