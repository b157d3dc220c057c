"""`quantize_model`: the steps of one static INT8 quantisation, in order.

Load the FP32 model and its samples (calibration.py), pre-process and name its nodes, then
quantise with ONNX Runtime (quantizer.py), measure accuracy and per-tensor error
(tensor_errors.py), and, with an accuracy budget, keep the worst nodes in FP32 until it holds
(fallback.py). The names other stages import from here are re-exported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from qtool.data.dataset import Dataset
from qtool.data.sources import load_dataset
from qtool.errors import QtoolError
from qtool.evaluation.evaluate import predicted_labels
from qtool.evaluation.model_io import ModelIO, model_io, run_scores
from qtool.modelfile.load import file_size, load_model, sha256_file
from qtool.modelfile.metadata import qtool_metadata, read_metadata, set_metadata
from qtool.modelfile.save import save_model
from qtool.modelfile.summary import quantization_kind
from qtool.outputs import check_output_path, staging_dir
from qtool.quantization.calibration import (
    CALIB_BATCH,
    Calibration,
    batches,
    debug_subset,
    eval_dataset,
    prepare,
)
from qtool.quantization.fallback import Attempt, Budget, FallbackStep, Outcome, run_fallback
from qtool.quantization.quantizer import (
    Job,
    check_nodes_exist,
    name_nodes,
    op_types_to_quantize,
    preprocess,
    quantize_once,
)
from qtool.quantization.report import BudgetNotMet, QuantizeReport, initializer_bytes
from qtool.quantization.settings import (
    FORMATS,
    INT8_TYPES,
    METHODS,
    QuantizeOptions,
    QuantSettings,
    cpu_flags,
    default_reduce_range,
    resolve_reduce_range,
)
from qtool.quantization.tensor_errors import TensorError, tensor_errors
from qtool.report import info
from qtool.runtimes import make_session

__all__ = [
    "FORMATS",
    "INT8_TYPES",
    "METHODS",
    "BudgetNotMet",
    "FallbackStep",
    "QuantSettings",
    "QuantizeOptions",
    "QuantizeReport",
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

    Raises QtoolError on bad input (exit 2) and BudgetNotMet (a WorkFailed, exit 1) when
    `options.max_accuracy_drop` (percentage points) cannot be met even with nodes kept in
    FP32 (within `max_steps` steps of `fallback_step` worst tensors each, when given); the
    model is then written only with `keep_best` (the best attempt), and the exception
    carries the report either way. An existing `out` is replaced only with `force`.
    """
    options = options or QuantizeOptions()
    options.validate()
    src, out = Path(src), Path(out)
    check_output_path(out, force=force, inputs=(src,), param="out")
    work = _load_work(src, calib, options)
    with staging_dir(out) as tmpdir:  # beside the output, named as a temp, removed on exit
        runs = _Attempts(Path(tmpdir), work, options)
        info(
            f"calibrating on {len(work.calib_x)} samples of {work.calib_set.spec} "
            f"({work.calib_set.split})"
        )
        outcome = _quantize_within_budget(runs, options)
        work.settings.fp32_nodes = list(outcome.final.extra)
        model = onnx.load(str(outcome.final.path))
        _set_output_metadata(model, work.proto, work.settings, work.sha)
        written = outcome.within is not False or options.keep_best
        if written:
            check_output_path(out, force=force, inputs=(src,), param="out")
            save_model(model, out)
    report = _report(work, options, runs, outcome, model, out if written else None)
    if outcome.within is False:
        kept = f"; the best attempt was written to {out}" if written else "; nothing written"
        raise BudgetNotMet(
            f"accuracy drop {report.accuracy_drop_pp:.2f} pp exceeds the budget of "
            f"{options.max_accuracy_drop} pp even with {len(work.settings.fp32_nodes)} node(s) "
            f"kept in FP32{kept}",
            report,
        )
    return report


@dataclass
class _Work:
    """The FP32 model and the samples one quantize_model call works from."""

    src: Path
    proto: onnx.ModelProto
    sha: str
    io: ModelIO
    op_types: list[str]
    settings: QuantSettings
    calib_set: Dataset
    calib_x: np.ndarray
    eval_set: Dataset | None
    eval_x: np.ndarray | None
    debug_x: np.ndarray
    notes: list[str]


def _load_work(src: Path, calib: str, options: QuantizeOptions) -> _Work:
    """Read the model, choose its input, prepare calibration and evaluation samples."""
    proto = load_model(src)
    kind = quantization_kind(proto)
    if kind != "none":  # ORT's quantizer would trip over its own node names, or stack scales
        raise QtoolError(
            f"{src} is already quantised ({kind}); quantize the FP32 model it came from"
        )
    meta = qtool_metadata(proto, str(src))
    sha = sha256_file(src)
    fp32 = make_session(src, providers=options.providers)
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
    reduce_range = resolve_reduce_range(options.reduce_range)
    info(f"reduce_range={reduce_range[0]} ({reduce_range[1]})")
    eval_set, eval_note = eval_dataset(options.eval_data, calib, meta)
    notes = [eval_note] if eval_note else []
    if options.max_accuracy_drop is not None and eval_set is None:
        raise QtoolError(
            f"an accuracy budget needs labelled evaluation data: name a labelled data set "
            f"({eval_note})",
            param="eval_data",
        )
    eval_x = None
    if eval_set is not None:
        eval_x = prepare(io, eval_set, "evaluation data", fp32, src, param="eval_data")
    debug_x = debug_subset(calib_x, options.debug_samples, options.seed)
    settings = _settings(options, calib, calib_set.split, len(calib_x), reduce_range)
    return _Work(
        src, proto, sha, io, op_types, settings, calib_set, calib_x, eval_set, eval_x, debug_x,
        notes,
    )  # fmt: skip


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


class _Attempts:
    """Quantise-and-measure runs sharing one pre-processed model and one calibration."""

    def __init__(self, tmp: Path, work: _Work, options: QuantizeOptions):
        self.tmp, self.work, self.options = tmp, work, options
        pre = tmp / "pre.onnx"
        work.settings.preprocessed, why = preprocess(work.src, pre)
        if why:
            info(f"note: {why}; quantising without it")
            work.notes.append(why)
        self.pre_model = name_nodes(pre)
        check_nodes_exist(self.pre_model, list(options.exclude_nodes))
        parts = batches(work.calib_x, CALIB_BATCH, work.io.fixed_batch)
        calibration = Calibration(work.io.input_name, parts, tmp / "calibration.json")
        self.job = Job(pre, calibration, work.settings, work.op_types)
        self.fp32_pred = None if work.eval_x is None else self._predict(work.src)
        self.accuracy_before = None
        if self.fp32_pred is not None:
            self.accuracy_before = float(np.mean(self.fp32_pred == work.eval_set.y))

    def _predict(self, path: Path) -> np.ndarray:
        session = make_session(path, providers=self.options.providers)
        return predicted_labels(run_scores(session, self.work.io, self.work.eval_x))

    def attempt(self, extra: list[str], tag: str) -> Attempt:
        """Quantise keeping the user's and `extra` nodes in FP32; measure error and accuracy."""
        exclude = list(self.options.exclude_nodes) + extra
        q_path = self.tmp / f"q_{tag}.onnx"
        quantize_once(self.job, q_path, exclude, self.options.fmt)
        qdq_path = q_path
        if self.options.fmt != "qdq":  # qdq_loss_debug reads QDQ models: measure the QDQ twin
            qdq_path = self.tmp / f"qdq_{tag}.onnx"
            quantize_once(self.job, qdq_path, exclude, "qdq")
        pre, graph = self.job.pre_path, self.pre_model.graph
        errors = tensor_errors(pre, qdq_path, self.work.io, self.work.debug_x, graph, self.tmp)
        acc = agree = None
        if self.fp32_pred is not None:
            pred = self._predict(q_path)
            acc = float(np.mean(pred == self.work.eval_set.y))
            agree = float(np.mean(pred == self.fp32_pred))
        return Attempt(q_path, extra, errors, acc, agree)

    def drop_pp(self, attempt: Attempt) -> float | None:
        if attempt.accuracy is None:
            return None
        return round(100.0 * (self.accuracy_before - attempt.accuracy), 6)


def _quantize_within_budget(runs: _Attempts, options: QuantizeOptions) -> Outcome:
    first = runs.attempt([], "0")
    if options.max_accuracy_drop is None:
        return Outcome(first, [], None)
    budget = Budget(
        options.max_accuracy_drop, options.fallback_step, options.max_steps, options.exclude_nodes
    )
    return run_fallback(first, runs.attempt, runs.drop_pp, budget)


def _report(
    work: _Work,
    options: QuantizeOptions,
    runs: _Attempts,
    outcome: Outcome,
    model: onnx.ModelProto,
    written_to: Path | None,
) -> QuantizeReport:
    size_before, size_after = file_size(work.src), len(model.SerializeToString())
    final = outcome.final
    return QuantizeReport(
        source=str(work.src),
        output=None if written_to is None else str(written_to),
        written=written_to is not None,
        settings=work.settings,
        source_sha256=work.sha,
        size_before=size_before,
        size_after=size_after,
        size_ratio=size_after / size_before,
        initializer_bytes_before=initializer_bytes(work.proto),
        initializer_bytes_after=initializer_bytes(model),
        eval_data=f"{work.eval_set.spec}:{work.eval_set.split}" if work.eval_set else None,
        eval_samples=len(work.eval_x) if work.eval_x is not None else 0,
        accuracy_before=runs.accuracy_before,
        accuracy_after=final.accuracy,
        accuracy_drop_pp=runs.drop_pp(final),
        top1_agreement=final.agreement,
        max_accuracy_drop_pp=options.max_accuracy_drop,
        within_budget=outcome.within,
        fallback_step_size=options.fallback_step,
        fallback_steps=outcome.steps,
        debug_samples=len(work.debug_x),
        tensor_errors=final.errors,
        notes=work.notes,
    )


def _set_output_metadata(
    model: onnx.ModelProto, source: onnx.ModelProto, settings: QuantSettings, sha: str
) -> None:
    """Carry the source's metadata over (normalisation, class names...) and add the settings."""
    values: dict[str, object] = dict(read_metadata(source))
    values["qtool.quantization"] = asdict(settings)
    values["qtool.source_sha256"] = sha
    values["qtool.seed"] = settings.seed
    set_metadata(model, values)
