"""`qtool predict`: classify inputs with a bundle's model, after verifying the bundle."""

from __future__ import annotations

from pathlib import Path

import click

from qtool.commands.options import (
    check_outputs,
    force_option,
    json_option,
    split_list,
    write_json_report,
)
from qtool.deploy.predict import predict_bundle
from qtool.report import show, table
from qtool.runtimes.providers import PRECISIONS


@click.command("predict")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--provider",
    "providers",
    default=None,
    callback=lambda ctx, param, value: split_list(value) or None,
    help="Execution provider(s) in order of preference, e.g. openvino,cpu: the first usable "
    "here runs (default: the one the bundle was validated on, else cpu).",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=None,
    help="fp32 or auto (default: as recorded in the bundle, else fp32).",
)
@json_option
@force_option
def command(
    bundle: Path,
    inputs: tuple[Path, ...],
    providers: list[str] | None,
    precision: str | None,
    json_path,
    force: bool,
) -> None:
    """Verify BUNDLE, then print class and probability for each INPUT (images or an .npz).

    A bundle whose bytes differ from its manifest is refused (exit 1). The model runs on the
    execution provider the bundle was validated on (package --provider), unless --provider
    says otherwise; a recorded provider that cannot be used here is refused (exit 2) with
    the reason, rather than silently swapped for another.

    \b
    Examples:
      qtool predict bundle/ scan1.png scan2.png
      qtool predict bundle.tar.gz samples.npz --json predictions.json
      qtool predict bundle/ scan.png --provider cpu
    """
    check_outputs(force, [bundle, *inputs], json_path=json_path)
    predictions, info = predict_bundle(bundle, list(inputs), providers, precision)
    show(
        table(
            f"predictions ({bundle} verified; on {info['provider']} ({info['precision']}), "
            f"{info['provider_chosen']})",
            ["input", "#", "class", "probability"],
            [[p.source, p.index, p.class_name, f"{p.probability:.4f}"] for p in predictions],
        )
    )
    write_json_report(
        json_path,
        {"bundle": str(bundle), **info, "predictions": predictions},
    )
