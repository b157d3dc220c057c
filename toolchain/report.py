"""Human output: rich tables on stdout, messages and progress bars on stderr."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

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


def progress() -> Progress:
    """A progress bar on stderr, hidden when stderr is not a terminal or with --quiet."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=_quiet or not sys.stderr.isatty(),
        transient=False,
    )


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
