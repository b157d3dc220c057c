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
from qtool.data.sources import sources_help
from qtool.quantization.quantize import quantize_model
from qtool.quantization.report import BudgetNotMet, QuantizeReport
from qtool.quantization.settings import FORMATS, INT8_TYPES, METHODS, QuantizeOptions
from qtool.report import fmt_bytes, fmt_pct, show, table
from qtool.runtimes.providers import DEFAULT_PRECISION, PRECISIONS

TOP_TENSORS = 10


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
    "--eval-data",
    default=None,
    help="Labelled data for accuracy (default: the calib spec's test split).",
)
@click.option(
    "--max-accuracy-drop",
    type=click.FloatRange(min=0),
    default=None,
    help="Budget in percentage points; keep damaged nodes FP32 until it is met.",
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
    normalisation metadata, shape fitting). The report gives size before/after, accuracy
    before/after and top-1 agreement (on --eval-data or the calib spec's test split) and the
    per-tensor error between FP32 and INT8 activations (SQNR in dB, worst first).

    With --max-accuracy-drop PP, the nodes around the tensors that add the most quantisation
    noise (producer and consumers) are kept in FP32, --fallback-step tensors per step, and
    the model is re-quantised (same calibration) until the drop is within PP. If it cannot
    be met the command exits 1 and writes no model (with --keep-best: writes the best
    attempt, still exit 1); --json is written in both cases.

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


def show_report(r: QuantizeReport) -> None:
    """The report as tables on stdout."""
    s = r.settings
    rows = [
        ["output", r.output or "(not written)"],
        ["method / format", f"{s.method} / {s.format}"],
        ["weights", f"{s.weight_type}, {'per channel' if s.per_channel else 'per tensor'}"],
        ["activations", s.activation_type],
        ["reduce_range", f"{s.reduce_range} ({s.reduce_range_reason})"],
        ["pre-processed", "yes" if s.preprocessed else "no (failed, see notes)"],
        ["calibration", f"{s.calibration} ({s.calibration_split}), {s.samples} samples"],
        ["seed", s.seed],
        ["size FP32 -> INT8", f"{fmt_bytes(r.size_before)} -> {fmt_bytes(r.size_after)}"],
        ["size ratio", f"{r.size_ratio:.3f}"],
        ["tensor bytes ratio", f"{r.initializer_bytes_after / r.initializer_bytes_before:.3f}"],
    ]  # fmt: skip
    if r.accuracy_before is not None:
        rows += [
            ["eval data", f"{r.eval_data}, {r.eval_samples} samples"],
            ["accuracy FP32", fmt_pct(r.accuracy_before)],
            ["accuracy INT8", fmt_pct(r.accuracy_after)],
            ["accuracy drop", f"{r.accuracy_drop_pp:.2f} pp"],
            ["top-1 agreement", fmt_pct(r.top1_agreement)],
        ]  # fmt: skip
    if len(r.providers) > 1:
        rows += [
            [
                f"  on {p['provider']} ({p['precision']})",
                f"{fmt_pct(p['accuracy_before'])} -> {fmt_pct(p['accuracy_after'])}, drop "
                f"{p['accuracy_drop_pp']:.2f} pp, agreement {fmt_pct(p['top1_agreement'])}",
            ]
            for p in r.providers
        ]
    if r.max_accuracy_drop_pp is not None:
        verdict = "met" if r.within_budget else "NOT met"
        rows.append(["budget", f"{r.max_accuracy_drop_pp} pp: {verdict}"])
    fp32 = s.exclude_nodes + s.fp32_nodes
    rows.append(["nodes kept FP32", ", ".join(fp32) if fp32 else "none"])
    for note in r.notes:
        rows.append(["note", note])
    show(table(f"qtool quantize {r.source}", ["", "value"], rows))
    if r.fallback_steps:
        show(
            table(
                f"accuracy-aware steps ({r.fallback_step_size} tensor(s) per step)",
                ["step", "nodes added to FP32", "FP32 nodes", "accuracy", "drop (pp)"],
                [
                    [st.step, ", ".join(st.added), st.fp32_nodes, fmt_pct(st.accuracy),
                     f"{st.drop_pp:.2f}"]
                    for st in r.fallback_steps
                ],
            )
        )  # fmt: skip
    errors = r.tensor_errors[:TOP_TENSORS]
    if errors:
        show(
            table(
                f"per-tensor error, worst first ({len(errors)} of {len(r.tensor_errors)}, "
                f"{r.debug_samples} samples; SQNR in dB, higher is better; "
                "noise added: % of signal power)",
                ["tensor", "node", "op", "SQNR FP32 vs INT8", "noise added here"],
                [
                    [e.tensor, e.node, e.op_type, f"{e.sqnr_db:.1f}", _pct3(e.added_noise)]
                    for e in errors
                ],
            )
        )  # fmt: skip


def _pct3(x: float) -> str:
    return f"{100 * x:.3g} %"
