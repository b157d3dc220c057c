"""`qtool predict`: classify inputs with a bundle's model, after verifying the bundle."""

from __future__ import annotations

from pathlib import Path

import click

from qtool.commands.options import (
    check_outputs,
    force_option,
    json_option,
    split_list,
    trust_list,
    trust_option,
    write_json_report,
)
from qtool.data.images import DEFAULT_MAX_PIXELS
from qtool.deploy.predict import predict_bundle
from qtool.report import info as remark
from qtool.report import show, table
from qtool.runtimes.providers import PRECISIONS


@click.command("predict")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@trust_option
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=None,
    help="Refuse an input file that decodes to more pixel values (frames x rows x columns x "
    f"channels) than this, before decoding it [default: the pixels limit, {DEFAULT_MAX_PIXELS:,}].",
)
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
    trust,
    max_pixels: int | None,
    providers: list[str] | None,
    precision: str | None,
    json_path,
    force: bool,
) -> None:
    """Verify BUNDLE, then print class and probability for each INPUT: images (PNG/JPEG),
    DICOM files (each frame of a multi-frame file is one row) or an .npz.

    A bundle whose bytes differ from its manifest is refused (exit 1); with --trust, so is a
    bundle not signed by a trusted key. The model runs on the execution provider the bundle
    was validated on (package --provider), unless --provider says otherwise; a recorded
    provider that cannot be used here is refused (exit 2) with the reason, rather than
    silently swapped for another.

    \b
    Examples:
      qtool predict bundle/ scan1.png scan2.dcm --trust release.key.pub
      qtool predict bundle.tar.gz samples.npz --json predictions.json
      qtool predict bundle/ scan.png --provider cpu
    """
    check_outputs(force, [bundle, *inputs], json_path=json_path)
    predictions, info = predict_bundle(
        bundle, list(inputs), trust_list(trust), max_pixels, providers, precision
    )
    show(
        table(
            f"predictions ({bundle} verified; {info['signer']}; on {info['provider']} "
            f"({info['precision']}), {info['provider_chosen']})",
            ["input", "#", "class", "probability"],
            [[p.source, p.index, p.class_name, f"{p.probability:.4f}"] for p in predictions],
        )
    )
    for source in dict.fromkeys(p.source for p in predictions):
        path, sep, array = source.rpartition(":")
        if sep and path.lower().endswith(".npz"):
            remark(f"{path}: read the rows of array {array!r}")
    write_json_report(
        json_path,
        {"bundle": str(bundle), **info, "predictions": predictions},
    )
