"""`qtool export`: PyTorch model -> ONNX file, checked against torch in ONNX Runtime."""

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


def parse_normalize(ctx, param, text: str | None) -> dict | None:
    """'0.5/0.25' or '0.485,0.456,0.406/0.229,0.224,0.225' -> {"mean": [...], "std": [...]}."""
    if text is None:
        return None
    mean, sep, std = text.partition("/")
    try:
        values = {"mean": [float(v) for v in mean.split(",")]}
        values["std"] = [float(v) for v in std.split(",")]
    except ValueError:
        values = None
    if not sep or values is None:
        raise click.BadParameter(
            f"{text!r} is not MEAN/STD: give e.g. 0.5/0.25, or per channel "
            "0.485,0.456,0.406/0.229,0.224,0.225 (pixels in [0, 1])"
        )
    return values


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
@click.option(
    "--class-names",
    default=None,
    callback=lambda ctx, param, value: split_list(value) if value else None,
    help="Class names in output order, e.g. normal,pneumonia: predictions print them "
    "(zoo models: renames the trained classes).",
)
@click.option(
    "--normalize",
    "normalization",
    default=None,
    callback=parse_normalize,
    metavar="MEAN/STD",
    help="Normalisation the input needs, applied by eval, predict and serve to [0, 1] "
    "pixels: 0.5/0.25 or per channel 0.485,0.456,0.406/0.229,0.224,0.225 (user models).",
)
@click.option(
    "--positive-class",
    default=None,
    metavar="NAME",
    help="The class counted as positive (sensitivity, ROC AUC) of a two-class model.",
)
@force_option
@json_option
def command(
    model, weights, out, opset, static_batch, exporter, atol, rtol, input_shape, data_spec,
    seed, class_names, normalization, positive_class, force, json_path,
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
      qtool export net.py:build --input-shape 1,1,128,128 --weights ckpt.pt --out net.onnx \\
        --class-names normal,pneumonia --normalize 0.5/0.25 --positive-class pneumonia
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
        class_names=tuple(class_names) if class_names else None,
        normalization=normalization,
        positive_class=positive_class,
    )
    report = export_model(model, out, weights=weights, settings=settings, force=force)
    show(_summary_table(report))
    write_json_report(json_path, vars(report))


def _summary_table(report: ExportReport):
    p, meta = report.parity, report.described
    batch_kind = "dynamic" if report.dynamic_batch else "static"
    norm = meta.get("normalization")
    return table(
        f"exported {report.model} -> {report.out}",
        ["property", "value"],
        [
            ["exporter / opset", f"{report.exporter} / {report.opset}"],
            ["input shape", f"{report.input_shape} ({batch_kind} batch)"],
            ["file size", fmt_bytes(report.file_bytes)],
            ["weights read from", report.weights_read or "none (factory initialisation)"],
            ["parameters", f"{fmt_count(report.parameters)} ({report.parameters})"],
            ["classes", ", ".join(meta.get("class_names") or []) or "not recorded"],
            ["positive class", meta.get("positive_class") or "-"],
            [
                "normalisation",
                f"mean {norm['mean']} / std {norm['std']}" if norm else "none recorded",
            ],
            ["FLOPs (batch 1)", fmt_count(report.flops)],
            ["parity samples", f"{p['samples']} from {p['source']}"],
            ["max abs diff", f"{p['max_abs_diff']:.3g} (atol {p['atol']:g})"],
            ["max rel diff", f"{p['max_rel_diff']:.3g} (rtol {p['rtol']:g})"],
            ["top-1 agreement", fmt_pct(p["top1_agreement"])],
            ["batches checked", ", ".join(map(str, p["batches"]))],
            ["time", f"{report.seconds:.1f} s"],
        ],
    )
