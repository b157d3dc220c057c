"""`qtool demo`: the whole pipeline on the built-in models, ending in one summary table."""

from __future__ import annotations

from pathlib import Path

import click

from qtool.commands.flip_views import campaign_plot
from qtool.commands.options import force_option
from qtool.demo.pipeline import DEFAULT_OUT, SUMMARY_FILE, TABLE_TITLES, run_demo, summary_table
from qtool.report import info, show, table


@click.command("demo")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUT,
    show_default=True,
    help="Folder for checkpoints, ONNX files and summary.json.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for every stage.")
@force_option
def command(out_dir: Path, seed: int, force: bool) -> None:
    """Run the pipeline on the zoo models and print one summary table.

    Trains a CNN and its stand-alone self-attention twin (SASA) on digits and an MLP on the
    breast-cancer table (or reuses checkpoints cached in $QTOOL_CACHE_DIR, default
    ~/.cache/qtool), exports each to ONNX with a parity check and evaluates it in ONNX
    Runtime. No network needed. Everything lands in --out, with summary.json.

    \b
    Examples:
      qtool demo
      qtool demo --out /tmp/demo --force
    """
    ctx = run_demo(out_dir, force=force, seed=seed, campaign_plot=campaign_plot)
    total = ctx.stage_seconds.get("total", 0.0)
    for group, title in TABLE_TITLES.items():
        columns, rows = summary_table(ctx, group)
        if rows and len(columns) > (2 if group == "model" else 1):
            if group == "model":
                title = f"qtool demo (seed {seed}, {total:.0f} s): {title}"
            show(table(title, columns, rows))
    for title, columns, rows in ctx.tables:
        show(table(title, columns, rows))
    for note in ctx.notes:
        info(f"note: {note}")
    info(f"files in {out_dir}/, facts in {out_dir / SUMMARY_FILE}")
