"""`qtool package`: a bundle a hospital CPU server can check before it loads the model."""

from __future__ import annotations

from pathlib import Path

import click

from qtool.commands.options import force_option, model_argument
from qtool.deploy.bundle import package
from qtool.report import fmt_bytes, show, table
from qtool.runtimes.providers import DEFAULT_PRECISION, PRECISIONS


@click.command("package")
@model_argument
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Bundle folder, or archive path with --format tar.gz|zip.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dir", "tar.gz", "zip"]),
    default="dir",
    show_default=True,
    help="A folder, or one archive file.",
)
@click.option(
    "--ecc", is_flag=True, help="Add Reed-Solomon parity so corrupted bytes can be repaired."
)
@click.option(
    "--ecc-nsym",
    type=int,
    default=16,
    show_default=True,
    help="Parity bytes per 255-byte codeword; repairs nsym/2 bytes per chunk.",
)
@click.option(
    "--report",
    "report_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="--json output of eval/quantize/bench/flip to bundle (repeatable).",
)
@click.option("--intended-use", default=None, help="Intended-use text for MODEL_CARD.md.")
@click.option(
    "--sign",
    "sign_key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Sign manifest.json with this Ed25519 private key (from qtool keygen).",
)
@click.option(
    "--provider",
    default=None,
    help="Record the execution provider the bundle was validated on (it must be usable "
    "here and load the model); qtool predict then runs on it.",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=DEFAULT_PRECISION,
    show_default=True,
    help="The precision recorded with --provider: fp32 (reduced precision forbidden) or auto.",
)
@force_option
def command(
    model,
    out,
    fmt,
    ecc,
    ecc_nsym,
    report_paths,
    intended_use,
    sign_key,
    provider,
    precision,
    force,
) -> None:
    """Bundle MODEL with manifest.json (hashes), MODEL_CARD.md, optional ECC parity and an
    optional signature (manifest.sig) over the manifest, which lists every other file.

    \b
    Examples:
      qtool package model.int8.onnx --out bundle/ --ecc --report eval.json --report bench.json
      qtool package model.int8.onnx --out bundle/ --ecc --sign release.key
      qtool package model.int8.onnx --out bundle.tar.gz --format tar.gz
      qtool package model.int8.onnx --out bundle/ --provider openvino --report eval.json
    """
    result = package(
        model,
        out,
        fmt=fmt,
        ecc=ecc,
        nsym=ecc_nsym,
        report_paths=list(report_paths),
        intended_use=intended_use,
        force=force,
        sign_key=sign_key,
        provider=provider,
        precision=precision,
    )
    rows = [
        [rel, fmt_bytes(info["bytes"]), info["sha256"][:16] + "…"]
        for rel, info in result.files.items()
    ]
    show(table(f"bundle {out}", ["file", "size", "sha256"], rows))
    lines = [
        ["initializers", f"{result.initializers} ({fmt_bytes(result.weight_bytes)})"],
        ["manifest sha256", result.manifest_sha256],
        ["signed by", result.signed_by or "unsigned (sign with --sign KEY from qtool keygen)"],
    ]
    if result.runtime:
        rt = result.runtime
        lines.append(["validated on", f"{rt['provider']} ({rt['ort_name']}), {rt['precision']}"])
    if result.ecc:
        lines.append(
            [
                "ECC",
                f"RS nsym={result.ecc['nsym']}: repairs "
                f"{result.ecc['correctable_bytes_per_chunk']} bytes per "
                f"{result.ecc['chunk_bytes']}-byte chunk, "
                f"{100 * result.ecc['overhead']:.1f} % size overhead",
            ]
        )
    show(table(None, ["", ""], lines))
