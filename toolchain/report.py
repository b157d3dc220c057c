"""Human output: rich tables on stdout, messages and progress on stderr.

Progress on a terminal is a rich bar; without one (a CI log, `2> run.log`, a pipe) it is a
plain line per task at most every `LINE_SECONDS` (and when the task ends), so a long job in a
log file says how far it got. `--quiet` silences both.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

# Piped output (CI logs, files) gets room for wide tables; a terminal keeps its own width.
console = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def info(message: str) -> None:
    """A progress remark on stderr, silenced by --quiet. Plain text: brackets are not markup."""
    if not _quiet:
        err_console.print(Text(message))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Table:
    out = Table(title=None if title is None else Text(title), title_justify="left")
    for i, col in enumerate(columns):
        out.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:  # cells are data, not markup: "[batch, 1, 8, 8]" must print as is
        out.add_row(*(v if isinstance(v, Text) else Text("" if v is None else str(v)) for v in row))
    return out


def show(*renderables) -> None:
    """Print tables and plain-text lines (strings are never read as rich markup)."""
    for item in renderables:
        console.print(Text(item) if isinstance(item, str) else item)


def error_line(label: str, message: str) -> None:
    """`label: message` on stderr, the label in bold red; the message printed verbatim, so
    advice like pip install 'qtool[data]' survives, but always as one line (a library's
    multi-line exception text is joined)."""
    one = " ".join(part.strip() for part in message.splitlines() if part.strip())
    err_console.print(Text.assemble((f"{label}:", "bold red"), " ", one))


def progress() -> Progress | LineProgress:
    """Progress on stderr: a bar on a terminal, lines every few seconds without one (see the
    module docstring), nothing with --quiet. Both take add_task / update / advance."""
    if not _quiet and not sys.stderr.isatty():
        return LineProgress()
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=_quiet,
        transient=False,
    )


LINE_SECONDS = 5.0  # the most often a task prints a progress line without a terminal


@dataclass
class _LineTask:
    description: str
    total: float | None
    status: str = ""
    completed: float = 0
    visible: bool = True
    started: float = 0.0
    printed: float | None = None  # when its last line was printed
    printed_completed: float | None = None  # and what it said
    finished: bool = False


class LineProgress:
    """The rich Progress calls qtool uses, as plain lines for logs:
    `train cnn: 3/20 (15 %) loss 0.41 - 0:01:02 elapsed, ~0:05:10 left`."""

    def __init__(self, interval: float | None = None):
        self.interval = LINE_SECONDS if interval is None else interval
        self.tasks: dict[int, _LineTask] = {}

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        for task in self.tasks.values():  # the last state of a stopped task, if not yet shown
            if (
                task.visible
                and task.printed is not None
                and task.completed != task.printed_completed
            ):
                self._print(task, time.monotonic())

    def add_task(self, description: str, total: float | None = None, **fields) -> int:
        task_id = len(self.tasks)
        status = str(fields.get("status", ""))
        self.tasks[task_id] = _LineTask(description, total, status, started=time.monotonic())
        return task_id

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(
        self,
        task_id: int,
        *,
        advance: float | None = None,
        completed: float | None = None,
        total: float | None = None,
        visible: bool | None = None,
        **fields,
    ) -> None:
        task = self.tasks[task_id]
        if visible is not None:
            task.visible = visible
        if total is not None:
            task.total = total
        if completed is not None:
            task.completed = completed
        if advance:
            task.completed += advance
        if "status" in fields:
            task.status = str(fields["status"])
        if not task.visible or (advance is None and completed is None):
            return
        now = time.monotonic()
        done = task.total is not None and task.completed >= task.total
        if done or task.printed is None or now - task.printed >= self.interval:
            self._print(task, now)
            task.finished = done

    def _print(self, task: _LineTask, now: float) -> None:
        task.printed, task.printed_completed = now, task.completed
        elapsed = now - task.started
        count = f"{task.completed:g}"
        left = ""
        if task.total:
            count += f"/{task.total:g} ({100 * task.completed / task.total:.0f} %)"
            if 0 < task.completed < task.total:
                rest = elapsed * (task.total - task.completed) / task.completed
                left = f", ~{_clock(rest)} left"
        status = f" {task.status}" if task.status else ""
        err_console.print(
            Text(f"{task.description}: {count}{status} - {_clock(elapsed)} elapsed{left}"),
            soft_wrap=True,
        )


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def fmt_bytes(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fmt_count(n: int | float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


def fmt_pct(x: float | None, digits: int = 2) -> str:
    return "" if x is None else f"{100 * x:.{digits}f} %"
