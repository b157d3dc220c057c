"""Options shared by several commands, declared once so they read the same everywhere."""

from __future__ import annotations

from pathlib import Path

import click

from qtool.outputs import check_output_path, write_json


def json_option(func):
    return click.option(
        "--json",
        "json_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also write the results as JSON to this file.",
    )(func)


def force_option(func):
    return click.option("--force", is_flag=True, help="Overwrite existing output files.")(func)


def model_argument(func):
    return click.argument("model", type=click.Path(path_type=Path))(func)


def write_json_report(path: Path | None, payload: dict, force: bool = True, inputs=()) -> None:
    """Write --json output (reports may be rewritten; inputs never are)."""
    if path is None:
        return
    check_output_path(path, force=force, inputs=inputs)
    write_json(path, payload)
