"""`qtool export`: PyTorch model -> ONNX file, checked against torch in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import click

from qtool.commands.options import check_outputs, force_option, json_option, write_json_report
from qtool.from_torch.export import ExportReport, ExportSettings, export_model
from qtool.report import fmt_bytes, fmt_count, fmt_pct, show, table


def parse_input_shape(ctx, param, text: str | None) -> tuple[int, ...] | None:
    """'1,3,224,224' (or 1x3x224x224) -> (1, 3, 224, 224)."""
    if text is None:
        return None
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        dims = ()
    if len(dims) < 2 or any(d <= 0 for d in dims):
        raise click.BadParameter(
            f"{text!r} is not a shape: give positive sizes like 1,3,224,224 (batch first)"
        )
    return dims


@click.command("export")
@click.argument("model", metavar="MODEL")
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint from qtool train (zoo models), or a state_dict file (user models).",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="ONNX file."
)
@click.option(
    "--opset",
    type=click.IntRange(min=7),
    default=None,
    help="ONNX opset (default: 18 with dynamo, its lowest; 17 with torchscript).",
)
@click.option("--static-batch", is_flag=True, help="Fix the batch size (default: dynamic).")
@click.option(
    "--exporter",
    type=click.Choice(["dynamo", "torchscript"]),
    default="dynamo",
    show_default=True,
    help="torch.export-based exporter, or the legacy TorchScript one.",
)
@click.option(
    "--atol", type=float, default=1e-4, show_default=True, help="Parity: absolute tolerance."
)
@click.option(
    "--rtol", type=float, default=1e-3, show_default=True, help="Parity: relative tolerance."
)
@click.option(
    "--input-shape",
    default=None,
    callback=parse_input_shape,
    help="Input shape, batch first, e.g. 1,3,224,224 (required for file.py:factory models).",
)
@click.option(
    "--data",
    "data_spec",
    default=None,
    help="Parity samples from this data set's test split (default: the model's own; "
    "random samples for user models).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sample choice.")
@force_option
@json_option
def command(
    model, weights, out, opset, static_batch, exporter, atol, rtol, input_shape, data_spec,
    seed, force, json_path,
) -> None:  # fmt: skip
    """Export MODEL to ONNX and check it against torch (parity) before writing it.

    MODEL is a zoo name (cnn, sasa, mlp; needs --weights from qtool train) or
    path/to/file.py:factory, a function returning any torch nn.Module (needs --input-shape;
    --weights optional). The same samples run through torch and ONNX Runtime (batch 1 and
    batches of 32); if any score differs by more than atol + rtol*|torch| the command exits 1
    and writes nothing. The file records qtool metadata (data set, normalisation, class
    names, weights sha256, exporter, opset) that later stages read.

    \b
    Examples:
      qtool export cnn --weights cnn.pt --out cnn.onnx
      qtool export my_net.py:build --input-shape 1,3,32,32 --weights net.pt --out net.onnx
      qtool export mlp --weights mlp.pt --out mlp.onnx --exporter torchscript --opset 17
    """
    check_outputs(force, [weights], out=out, json_path=json_path)
    settings = ExportSettings(
        exporter=exporter,
        opset=opset,
        static_batch=static_batch,
        atol=atol,
        rtol=rtol,
        input_shape=input_shape,
        data_spec=data_spec,
        seed=seed,
    )
    report = export_model(model, out, weights=weights, settings=settings, force=force)
    show(_summary_table(report))
    write_json_report(json_path, vars(report))


def _summary_table(report: ExportReport):
    p = report.parity
    batch_kind = "dynamic" if report.dynamic_batch else "static"
    return table(
        f"exported {report.model} -> {report.out}",
        ["property", "value"],
        [
            ["exporter / opset", f"{report.exporter} / {report.opset}"],
            ["input shape", f"{report.input_shape} ({batch_kind} batch)"],
            ["file size", fmt_bytes(report.file_bytes)],
            ["parameters", f"{fmt_count(report.parameters)} ({report.parameters})"],
            ["FLOPs (batch 1)", fmt_count(report.flops)],
            ["parity samples", f"{p['samples']} from {p['source']}"],
            ["max abs diff", f"{p['max_abs_diff']:.3g} (atol {p['atol']:g})"],
            ["max rel diff", f"{p['max_rel_diff']:.3g} (rtol {p['rtol']:g})"],
            ["top-1 agreement", fmt_pct(p["top1_agreement"])],
            ["batches checked", ", ".join(map(str, p["batches"]))],
            ["time", f"{report.seconds:.1f} s"],
        ],
    )
