"""`qtool quantize`: static INT8 with ONNX Runtime, accuracy cost measured and budgeted."""

from __future__ import annotations

from pathlib import Path

import click

from qtool.commands.options import (
    check_outputs,
    force_option,
    json_option,
    model_argument,
    split_list,
    write_json_report,
)
from qtool.commands.quantize_views import show_report
from qtool.data.sources import sources_help
from qtool.quantization.quantize import quantize_model
from qtool.quantization.report import BudgetNotMet
from qtool.quantization.settings import (
    DEFAULT_ACTIVATION_MEMORY_MB,
    FORMATS,
    INT8_TYPES,
    METHODS,
    PLACEMENTS,
    QuantizeOptions,
)
from qtool.runtimes.providers import DEFAULT_PRECISION, PRECISIONS


@click.command("quantize", epilog=sources_help())
@model_argument
@click.option("--calib", required=True, help="Calibration data spec (train split by default).")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the INT8 model.",
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Calibration samples (a seeded subsample of the split).",
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="minmax",
    show_default=True,
    help="Calibration method for activation ranges.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="qdq",
    show_default=True,
    help="QDQ (Quantize/DequantizeLinear pairs) or QOperator (QLinearConv...).",
)
@click.option(
    "--per-tensor", is_flag=True, help="One scale per weight tensor (default per channel)."
)
@click.option(
    "--activation-type", type=click.Choice(INT8_TYPES), default="uint8", show_default=True
)
@click.option("--weight-type", type=click.Choice(INT8_TYPES), default="int8", show_default=True)
@click.option(
    "--reduce-range/--no-reduce-range",
    default=None,
    help="7-bit weights. Default: on for x86 CPUs without VNNI, else off.",
)
@click.option("--exclude-nodes", default=None, help="Comma-separated node names to keep in FP32.")
@click.option("--exclude-op-types", default=None, help="Comma-separated op types not to quantise.")
@click.option(
    "--input", "input_name", default=None, help="Model input to feed (default: first float input)."
)
@click.option(
    "--val-data",
    default=None,
    help="Labelled data the accuracy budget is judged on (default: the calib spec's val split).",
)
@click.option(
    "--test-data",
    default=None,
    help="Labelled data accuracy is only reported on (default: the calib spec's test split).",
)
@click.option(
    "--max-accuracy-drop",
    type=click.FloatRange(min=0),
    default=None,
    help="Budget in percentage points on the validation split; keep damaged nodes FP32 "
    "until it is met.",
)
@click.option(
    "--fallback-step",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Worst tensors whose nodes go back to FP32 per accuracy-aware step.",
)
@click.option(
    "--max-steps",
    type=click.IntRange(min=0),
    default=None,
    help="Give up the accuracy-aware loop after this many steps (default: until no candidates).",
)
@click.option(
    "--keep-best",
    is_flag=True,
    help="If the budget cannot be met, still write the best attempt (exit stays 1).",
)
@click.option(
    "--debug-samples",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Samples for the per-tensor FP32-vs-INT8 error.",
)
@click.option(
    "--placement",
    type=click.Choice(PLACEMENTS),
    default="int8-kernels",
    show_default=True,
    help="int8-kernels: Q/DQ only around nodes ONNX Runtime runs in INT8 on this CPU "
    "(read from its optimised graph); ort: ORT's full placement.",
)
@click.option(
    "--activation-memory",
    "activation_memory_mb",
    type=click.IntRange(min=1),
    default=DEFAULT_ACTIVATION_MEMORY_MB,
    show_default=True,
    help="MiB of activations calibration and the error analysis hold at a time; batches "
    "shrink to fit (down to one sample).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed for choosing calibration and debug samples.",
)
@click.option(
    "--provider",
    "providers",
    default=None,
    callback=lambda ctx, param, value: split_list(value) or None,
    help="Execution provider(s) the accuracy checks run on, e.g. cpu (default) or "
    "cpu,openvino; with several, the budget must hold on each (the worst drop counts).",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=DEFAULT_PRECISION,
    show_default=True,
    help="Precision asked of those providers: fp32 forbids reduced precision; auto: theirs.",
)
@json_option
@force_option
def command(
    model: Path,
    calib: str,
    out: Path,
    per_tensor: bool,
    exclude_nodes: str | None,
    exclude_op_types: str | None,
    json_path: Path | None,
    force: bool,
    **settings,
) -> None:
    """Quantise MODEL to static INT8 with ONNX Runtime and measure what it cost.

    Calibration samples are prepared exactly as `qtool eval` prepares them (the model's
    normalisation metadata, shape fitting). Q/DQ pairs go only around nodes ONNX Runtime
    runs in INT8 on this CPU (--placement). The report gives size before/after, accuracy
    FP32 vs INT8 and top-1 agreement on two splits, each named: the validation split
    (--val-data, default the calib spec's :val), on which the budget is judged, and the
    test split (--test-data, default :test), only reported; and the per-tensor error between
    FP32 and INT8 activations (SQNR in dB, worst first).

    With --max-accuracy-drop PP, the nodes around the tensors that add the most quantisation
    noise (producer and consumers) are kept in FP32, --fallback-step tensors per step, and
    the model is re-quantised (same calibration) until the validation drop is within PP. A
    data set without a val split cannot judge a budget (exit 2: name one with --val-data;
    the test split is never tuned on). If the budget cannot be met the command exits 1 and
    writes no model (with --keep-best: writes the best attempt, still exit 1); --json is
    written in both cases.

    \b
    Examples:
      qtool quantize cnn.onnx --calib digits --out cnn.int8.onnx
      qtool quantize cnn.onnx --calib digits --out cnn.int8.onnx --max-accuracy-drop 0.5
      qtool quantize resnet50.onnx --input data --calib npz:images.npz --out r50.int8.onnx
    """
    check_outputs(force, [model], out=out, json_path=json_path)
    # the other options are named like QuantizeOptions' fields, so errors that name a field
    # (QtoolError.param) reach the right flag
    options = QuantizeOptions(
        per_channel=not per_tensor,
        exclude_nodes=split_list(exclude_nodes),
        exclude_op_types=split_list(exclude_op_types),
        **settings,
    )
    try:
        report = quantize_model(model, out, calib, options, force=force)
    except BudgetNotMet as exc:
        show_report(exc.report)
        write_json_report(json_path, exc.report.to_dict())
        raise
    show_report(report)
    write_json_report(json_path, report.to_dict())
