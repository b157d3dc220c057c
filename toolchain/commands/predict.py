"""`qtool predict`: classify inputs with a bundle's model, after verifying the bundle."""

from __future__ import annotations

from pathlib import Path

import click

from qtool.commands.options import (
    check_outputs,
    force_option,
    json_option,
    trust_list,
    trust_option,
    write_json_report,
)
from qtool.data.images import DEFAULT_MAX_PIXELS
from qtool.deploy.predict import predict_bundle
from qtool.report import show, table


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
@json_option
@force_option
def command(
    bundle: Path, inputs: tuple[Path, ...], trust, max_pixels: int | None, json_path, force: bool
) -> None:
    """Verify BUNDLE, then print class and probability for each INPUT: images (PNG/JPEG),
    DICOM files (each frame of a multi-frame file is one row) or an .npz.

    A bundle whose bytes differ from its manifest is refused (exit 1); with --trust, so is a
    bundle not signed by a trusted key.

    \b
    Examples:
      qtool predict bundle/ scan1.png scan2.dcm --trust release.key.pub
      qtool predict bundle.tar.gz samples.npz --json predictions.json
    """
    check_outputs(force, [bundle, *inputs], json_path=json_path)
    predictions, info = predict_bundle(bundle, list(inputs), trust_list(trust), max_pixels)
    show(
        table(
            f"predictions ({bundle} verified; {info['signer']})",
            ["input", "#", "class", "probability"],
            [[p.source, p.index, p.class_name, f"{p.probability:.4f}"] for p in predictions],
        )
    )
    write_json_report(
        json_path,
        {"bundle": str(bundle), **info, "predictions": predictions},
    )
