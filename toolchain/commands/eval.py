"""`qtool eval`: accuracy of an ONNX model on a data set, in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import click

from qtool.commands.options import (
    check_outputs,
    force_option,
    json_option,
    model_argument,
    write_json_report,
)
from qtool.data.dataset import SPLITS
from qtool.data.sources import load_dataset, sources_help
from qtool.evaluation.evaluate import EvalResult, evaluate_session, model_io
from qtool.modelfile.load import load_model
from qtool.modelfile.metadata import qtool_metadata
from qtool.report import fmt_pct, show, table
from qtool.runtimes import make_session


@click.command("eval", epilog=sources_help())
@model_argument
@click.option("--data", "data_spec", required=True, help="Data set spec, e.g. digits or npz:x.npz.")
@click.option("--split", type=click.Choice(SPLITS), default=None, help="Split (default: test).")
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--input", "input_name", default=None, help="Model input to feed (default: first float input)."
)
@click.option("--output", "output_name", default=None, help="Output holding class scores.")
@click.option(
    "--positive-class",
    type=int,
    default=None,
    help="Class index counted as positive for sensitivity (two classes).",
)
@click.option("--provider", "providers", multiple=True, help="Execution provider (default: cpu).")
@json_option
@force_option
def command(
    model,
    data_spec,
    split,
    batch,
    input_name,
    output_name,
    positive_class,
    providers,
    json_path: Path | None,
    force: bool,
) -> None:
    """Accuracy, per-class precision/recall and confusion matrix of MODEL on a data set.

    Works on models qtool did not make: the first float input gets the samples, the first
    float (batch, classes) output is read as class scores. Normalisation is applied only when
    the model's qtool metadata asks for it.

    \b
    Examples:
      qtool eval cnn.onnx --data digits
      qtool eval model.onnx --data npz:pathmnist.npz:test --json eval.json
    """
    check_outputs(force, [model], json_path=json_path)
    proto = load_model(model)
    meta = qtool_metadata(proto)
    session = make_session(model, providers=providers)
    io = model_io(session, meta, input_name, output_name)
    dataset = load_dataset(data_spec, split, param="data_spec")
    result = evaluate_session(session, io, dataset, batch, positive_class)
    show_result(str(model), result)
    write_json_report(json_path, {"model": str(model), **vars(result)})


def show_result(title: str, result: EvalResult) -> None:
    """Headline metrics, per-class precision/recall and the confusion matrix as tables."""
    rows = [
        ["accuracy", fmt_pct(result.accuracy)],
        ["samples", result.samples],
        ["data", f"{result.data} ({result.split})"],
        ["output read", result.output],
    ]
    if result.sensitivity is not None:
        rows += [
            [f"sensitivity ({result.positive_class})", fmt_pct(result.sensitivity)],
            ["specificity", fmt_pct(result.specificity)],
        ]
    if result.nonfinite_outputs:
        rows.append(["NaN/Inf outputs", result.nonfinite_outputs])
    show(table(title, ["metric", "value"], rows))
    show(
        table(
            "per class",
            ["class", "precision", "recall", "support"],
            [
                [c.name, fmt_pct(c.precision), fmt_pct(c.recall), c.support]
                for c in result.per_class
            ],
        )
    )
    names = [c.name for c in result.per_class]
    show(
        table(
            "confusion (rows: true, columns: predicted)",
            ["true \\ pred", *names],
            [[names[i], *row] for i, row in enumerate(result.confusion)],
        )
    )
