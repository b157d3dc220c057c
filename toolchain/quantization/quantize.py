"""`quantize_model`: the steps of one static INT8 quantisation, in order.

Load the FP32 model's facts and its samples (calibration.py), then, in attempts.py:
pre-process and name its nodes, quantise with ONNX Runtime (quantizer.py) with Q/DQ only where
ORT runs INT8 (placement.py), measure per-tensor error (tensor_errors.py) and validation
accuracy, and, with an accuracy budget, keep the worst nodes in FP32 until it holds on the
validation split (fallback.py); the test split is scored once, on the final model. The names
other stages import from here are re-exported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from qtool.data.dataset import Dataset
from qtool.data.sources import load_dataset
from qtool.errors import QtoolError
from qtool.evaluation.model_io import ModelIO, model_io
from qtool.modelfile.load import file_size, load_model, sha256_file
from qtool.modelfile.metadata import qtool_metadata, read_metadata, set_metadata
from qtool.modelfile.roles import mark_fixed_convs
from qtool.modelfile.save import save_model
from qtool.modelfile.summary import quantization_kind
from qtool.outputs import check_output_path, staging_dir
from qtool.quantization.attempts import Attempts, Labelled, Work
from qtool.quantization.calibration import debug_subset, labelled_split, prepare
from qtool.quantization.fallback import Budget, FallbackStep, Outcome, run_fallback
from qtool.quantization.quantizer import op_types_to_quantize
from qtool.quantization.report import (
    BudgetNotMet,
    QuantizeReport,
    SplitAccuracy,
    initializer_bytes,
)
from qtool.quantization.settings import (
    FORMATS,
    INT8_TYPES,
    METHODS,
    PLACEMENTS,
    QuantizeOptions,
    QuantSettings,
    cpu_flags,
    default_reduce_range,
    resolve_reduce_range,
)
from qtool.quantization.tensor_errors import TensorError, with_modules
from qtool.report import info
from qtool.runtimes import make_session

__all__ = [
    "FORMATS",
    "INT8_TYPES",
    "METHODS",
    "PLACEMENTS",
    "BudgetNotMet",
    "FallbackStep",
    "QuantSettings",
    "QuantizeOptions",
    "QuantizeReport",
    "SplitAccuracy",
    "TensorError",
    "cpu_flags",
    "default_reduce_range",
    "quantize_model",
]


def quantize_model(
    src: str | Path,
    out: str | Path,
    calib: str,
    options: QuantizeOptions | None = None,
    *,
    force: bool = False,
) -> QuantizeReport:
    """Quantise `src` to static INT8 at `out`, calibrated on data spec `calib`, and measure
    what it cost.

    Accuracy is scored on two labelled splits: the validation split (`options.val_data`,
    default the calib spec's val split) judges the budget, the test split (`test_data`,
    default the calib spec's test split) is only reported. Raises QtoolError on bad input
    (exit 2), including a budget with no validation split to judge it on, and BudgetNotMet
    (a WorkFailed, exit 1) when `options.max_accuracy_drop` (percentage points) cannot be
    met on the validation split even with nodes kept in FP32 (within `max_steps` steps of
    `fallback_step` worst tensors each, when given); the model is then written only with
    `keep_best` (the best attempt), and the exception carries the report either way. An
    existing `out` is replaced only with `force`.
    """
    options = options or QuantizeOptions()
    options.validate()
    src, out = Path(src), Path(out)
    check_output_path(out, force=force, inputs=(src,), param="out")
    work = _load_work(src, calib, options)
    with staging_dir(out) as tmpdir:  # beside the output, named as a temp, removed on exit
        runs = Attempts(Path(tmpdir), work, options)
        info(
            f"calibrating on {len(work.calib_x)} samples of {work.calib_set.spec} "
            f"({work.calib_set.split}), {work.settings.calibration_batch} at a time"
        )
        outcome = _quantize_within_budget(runs, options)
        work.settings.fp32_nodes = list(outcome.final.extra)
        validation, val_rows = runs.split_accuracy(work.val, outcome.final.path)
        test, test_rows = runs.split_accuracy(work.test, outcome.final.path)
        model = onnx.load(str(outcome.final.path))
        _set_output_metadata(model, work.metadata, work.settings, work.sha)
        written = outcome.within is not False or options.keep_best
        if written:
            check_output_path(out, force=force, inputs=(src,), param="out")
            save_model(model, out)
    report = _report(work, options, outcome, model, validation, test, out if written else None)
    report.placement = asdict(runs.placement)
    report.providers = val_rows + test_rows
    if outcome.within is False:
        kept = f"; the best attempt was written to {out}" if written else "; nothing written"
        raise BudgetNotMet(
            f"accuracy drop {validation.drop_pp:.2f} pp on {validation.data} exceeds the "
            f"budget of {options.max_accuracy_drop} pp even with "
            f"{len(work.settings.fp32_nodes)} node(s) kept in FP32{kept}",
            report,
        )
    return report


def _load_work(src: Path, calib: str, options: QuantizeOptions) -> Work:
    """Read the model, choose its input, prepare calibration and labelled samples."""
    proto = load_model(src)
    kind = quantization_kind(proto)
    if kind != "none":  # ORT's quantizer would trip over its own node names, or stack scales
        raise QtoolError(
            f"{src} is already quantised ({kind}); quantize the FP32 model it came from"
        )
    meta, metadata = qtool_metadata(proto, str(src)), read_metadata(proto)
    init_bytes = initializer_bytes(proto)
    del proto  # a 25 M-parameter model is 100 MB: keep no copy through calibration
    sha = sha256_file(src)
    first = (options.providers or ["cpu"])[0]
    fp32 = make_session(src, [first], precision=options.precision)
    io = model_io(fp32, meta, options.input_name)
    others = [i.name for i in fp32.get_inputs() if i.name != io.input_name]
    if others:
        raise QtoolError(
            f"{src} has more inputs than {io.input_name!r} ({', '.join(others)}); "
            "qtool quantize calibrates single-input models"
        )
    op_types = op_types_to_quantize(list(options.exclude_op_types))
    calib_set = load_dataset(calib, default_split="train", param="calib")
    calib_set = calib_set.take(options.samples, options.seed)
    calib_x = prepare(io, calib_set, "calibration data", fp32, src, param="calib")
    calib_set = _without_samples(calib_set)  # the prepared copy is the one kept
    reduce_range = resolve_reduce_range(options.reduce_range)
    info(f"reduce_range={reduce_range[0]} ({reduce_range[1]})")
    notes: list[str] = []
    val, test = _labelled(options, calib, meta, io, fp32, src, notes)
    debug_index = debug_subset(np.arange(len(calib_x)), options.debug_samples, options.seed)
    settings = _settings(options, calib, calib_set.split, len(calib_x), reduce_range)
    return Work(
        src, metadata, init_bytes, sha, io, op_types, settings, calib_set, calib_x, val, test,
        debug_index, notes,
    )  # fmt: skip


def _labelled(
    options: QuantizeOptions,
    calib: str,
    meta: dict,
    io: ModelIO,
    session: ort.InferenceSession,
    src: Path,
    notes: list[str],
) -> tuple[Labelled | None, Labelled | None]:
    """The validation split (judges the budget) and the test split (only reported)."""
    found, missing = {}, {}
    for split, param, given, role in (
        ("val", "val_data", options.val_data, "budget"),
        ("test", "test_data", options.test_data, "reported"),
    ):
        data, why = labelled_split(given, calib, meta, split, param)
        found[split] = None
        if data is None:
            missing[split] = why
            notes.append(f"{split} accuracy not measured: {why}")
        else:
            x = prepare(io, data, f"{split} data", session, src, param=param)
            found[split] = Labelled(_without_samples(data), x, role)
    val, test = found["val"], found["test"]
    if options.max_accuracy_drop is not None and val is None:
        raise QtoolError(
            "an accuracy budget is judged on a labelled validation split, and none was found "
            f"({missing['val']}); name one (a spec ending in :val, or other held-out labelled "
            "data): the test split is only reported, never tuned on",
            param="val_data",
        )
    if val is not None and test is not None and _same(val.data, test.data):
        raise QtoolError(
            f"the validation data is the test data ({val.data.spec}:{val.data.split}): the "
            "budget would be tuned on the split the report calls held out; name another split",
            param="val_data",
        )
    return val, test


def _without_samples(data: Dataset) -> Dataset:
    """The data set's name, split and labels without its raw samples (at 224 px, 256 of them
    are 150 MB that calibration would otherwise hold twice)."""
    return dataclasses.replace(data, x=np.empty((0, *data.x.shape[1:]), data.x.dtype))


def _same(a: Dataset, b: Dataset) -> bool:
    return (a.spec, a.split) == (b.spec, b.split)


def _settings(
    options: QuantizeOptions, calib: str, split: str, samples: int, reduce_range: tuple[bool, str]
) -> QuantSettings:
    return QuantSettings(
        method=options.method,
        format=options.fmt,
        per_channel=options.per_channel,
        activation_type=options.activation_type,
        weight_type=options.weight_type,
        reduce_range=reduce_range[0],
        reduce_range_reason=reduce_range[1],
        exclude_nodes=list(options.exclude_nodes),
        exclude_op_types=list(options.exclude_op_types),
        fp32_nodes=[],
        calibration=calib,
        calibration_split=split,
        samples=samples,
        seed=options.seed,
        preprocessed=False,
    )


def _quantize_within_budget(runs: Attempts, options: QuantizeOptions) -> Outcome:
    first = runs.first()
    if options.max_accuracy_drop is None:
        return Outcome(first, [], None)
    budget = Budget(
        options.max_accuracy_drop, options.fallback_step, options.max_steps, runs.kept_out
    )
    return run_fallback(first, runs.attempt, runs.drop_pp, budget)


def _report(
    work: Work,
    options: QuantizeOptions,
    outcome: Outcome,
    model: onnx.ModelProto,
    validation: SplitAccuracy | None,
    test: SplitAccuracy | None,
    written_to: Path | None,
) -> QuantizeReport:
    size_before, size_after = file_size(work.src), model.ByteSize()
    return QuantizeReport(
        source=str(work.src),
        output=None if written_to is None else str(written_to),
        written=written_to is not None,
        settings=work.settings,
        source_sha256=work.sha,
        size_before=size_before,
        size_after=size_after,
        size_ratio=size_after / size_before,
        initializer_bytes_before=work.initializer_bytes,
        initializer_bytes_after=initializer_bytes(model),
        validation=validation,
        test=test,
        max_accuracy_drop_pp=options.max_accuracy_drop,
        within_budget=outcome.within,
        fallback_step_size=options.fallback_step,
        fallback_steps=outcome.steps,
        debug_samples=len(work.debug_index),
        tensor_errors=with_modules(outcome.final.errors, work.metadata),
        notes=work.notes,
    )


def _set_output_metadata(
    model: onnx.ModelProto, metadata: dict[str, str], settings: QuantSettings, sha: str
) -> None:
    """Carry the source's metadata over (normalisation, class names...) and add the settings."""
    values: dict[str, object] = dict(metadata)
    values["qtool.quantization"] = asdict(settings)
    values["qtool.source_sha256"] = sha
    values["qtool.seed"] = settings.seed
    set_metadata(model, values)
    # ORT's pre-processing drops node metadata: mark one-hot gather Convs fixed again
    mark_fixed_convs(model)
