"""`qtool eval`: accuracy of an ONNX model on a data set, in ONNX Runtime."""

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
from qtool.data.dataset import SPLITS
from qtool.data.sources import load_dataset, sources_help
from qtool.errors import QtoolError
from qtool.evaluation.evaluate import EvalResult, evaluate_session, model_io
from qtool.evaluation.providers import ProviderAccuracy, compare_providers
from qtool.modelfile.load import load_model
from qtool.modelfile.metadata import qtool_metadata
from qtool.report import fmt_pct, show, table
from qtool.runtimes import make_session
from qtool.runtimes.providers import DEFAULT_PRECISION, PRECISIONS, compared_specs


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
    default=None,
    metavar="NAME|INDEX",
    help="Class counted as positive for sensitivity and ROC AUC (two classes; default: the "
    "model's recorded one, else the data set's).",
)
@click.option(
    "--at-sensitivity",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=None,
    metavar="S",
    help="Two-class models: the threshold on the positive class's probability reaching this "
    "sensitivity (e.g. 0.95), and the specificity there.",
)
@click.option(
    "--provider",
    "providers",
    multiple=True,
    help="Execution provider(s), e.g. cpu (default) or cpu,openvino: each scores the model "
    "and is compared with the CPU provider (accuracy, top-1 agreement).",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=DEFAULT_PRECISION,
    show_default=True,
    help="fp32: forbid reduced precision; auto: each provider's own choice.",
)
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
    at_sensitivity,
    providers,
    precision: str,
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
      qtool eval cnn.onnx --data digits --provider cpu,openvino --precision auto
      qtool eval mlp.onnx --data breast-cancer --at-sensitivity 0.95
    """
    check_outputs(force, [model], json_path=json_path)
    specs = compared_specs(split_list(providers) or ["cpu"])
    proto = load_model(model)
    meta = qtool_metadata(proto)
    session = make_session(model, [specs[0].name], precision=precision)
    io = model_io(session, meta, input_name, output_name)
    dataset = load_dataset(data_spec, split, param="data_spec")
    result = evaluate_session(session, io, dataset, batch, positive_class, at_sensitivity)
    show_result(f"{model} on {specs[0].name} ({precision})", result)
    report = {"model": str(model), **vars(result), "provider": specs[0].name}
    report["precision"] = precision
    failures: list[dict] = []
    if len(specs) > 1:
        rows = compare_providers(
            model, specs, dataset, precision=precision, batch=batch, failures=failures
        )
        show(providers_table(rows))
        report["providers"] = rows
        report["failures"] = failures
    write_json_report(json_path, report)
    if failures:  # after the other providers' results are shown and written
        raise QtoolError("\n".join(f["error"] for f in failures))


def providers_table(rows: list[ProviderAccuracy]) -> object:
    """Accuracy per provider against the CPU provider on the same samples."""
    body = [
        [
            f"{r.provider} · {r.precision}",
            fmt_pct(r.accuracy),
            f"{r.accuracy_drop_pp:+.2f}",
            fmt_pct(r.top1_agreement_with_cpu),
            f"{r.max_abs_score_diff_vs_cpu:.2g}",
        ]
        for r in rows
    ]
    columns = ["provider", "accuracy", "drop vs cpu (pp)", "top-1 agree", "max |score diff|"]
    return table(f"per provider, vs the CPU provider ({rows[0].data})", columns, body)


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
    if result.roc_auc is not None:
        rows.append(["ROC AUC", f"{result.roc_auc:.4f}"])
    point = result.operating_point
    if point:
        rows += [
            [
                f"at sensitivity >= {fmt_pct(point['target_sensitivity'])}",
                f"threshold p >= {point['threshold']:.4g}",
            ],
            ["  sensitivity / specificity there",
             f"{fmt_pct(point['sensitivity'])} / {fmt_pct(point['specificity'])}"],
        ]  # fmt: skip
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
