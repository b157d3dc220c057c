"""Quantise-and-measure runs of one `quantize_model` call, sharing one model and calibration.

`Work` is what the call works from (the FP32 model's facts and prepared samples, no model
proto: at 25 M parameters every copy held during calibration costs 100 MB). `Attempts`
pre-processes and names the nodes once, sizes calibration batches to the memory bound,
decides the Q/DQ placement (placement.py) on the first quantisation, and measures every
attempt: per-tensor error (streamed) and accuracy on the validation split, where the budget is
judged. The test split is scored once, on the final model, and never steers anything.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from qtool.data.dataset import Dataset
from qtool.evaluation.evaluate import predicted_labels
from qtool.evaluation.model_io import ModelIO, run_scores
from qtool.modelfile.roles import fixed_conv_names
from qtool.quantization.calibration import Calibration, batches, calibration_batch
from qtool.quantization.fallback import Attempt
from qtool.quantization.placement import Placement, place
from qtool.quantization.quantizer import (
    Job,
    check_nodes_exist,
    name_nodes,
    preprocess,
    quantize_once,
)
from qtool.quantization.report import SplitAccuracy
from qtool.quantization.settings import QuantizeOptions, QuantSettings
from qtool.quantization.tensor_errors import tensor_errors
from qtool.report import info
from qtool.runtimes import make_session
from qtool.runtimes.providers import compared_specs

MIB = 1 << 20


@dataclass
class Labelled:
    """One labelled split, prepared for the model, and its role."""

    data: Dataset
    x: np.ndarray
    role: str  # "budget" or "reported"


@dataclass
class Work:
    """The FP32 model's facts and the samples one quantize_model call works from."""

    src: Path
    metadata: dict[str, str]
    initializer_bytes: int
    sha: str
    io: ModelIO
    op_types: list[str]
    settings: QuantSettings
    calib_set: Dataset
    calib_x: np.ndarray
    val: Labelled | None
    test: Labelled | None
    debug_index: np.ndarray  # calibration samples the per-tensor error runs on
    notes: list[str]


class Attempts:
    """Quantise-and-measure runs sharing one pre-processed model and one calibration."""

    def __init__(self, tmp: Path, work: Work, options: QuantizeOptions):
        self.tmp, self.work, self.options = tmp, work, options
        self.memory = options.activation_memory_mb * MIB
        pre = tmp / "pre.onnx"
        work.settings.preprocessed, why = preprocess(work.src, pre)
        if why:
            info(f"note: {why}; quantising without it")
            work.notes.append(why)
        model = name_nodes(pre)
        check_nodes_exist(model, list(options.exclude_nodes))
        batch = work.io.fixed_batch or calibration_batch(model, self.memory)
        self.graph = _structure(model)  # nodes and tensor names only, for the error map
        del model
        work.settings.calibration_batch = batch
        parts = batches(work.calib_x, batch, work.io.fixed_batch)
        calibration = Calibration(work.io.input_name, parts, tmp / "calibration.json")
        self.job = Job(pre, calibration, work.settings, work.op_types)
        # accuracy checks run on every provider asked (default cpu); the first is the one
        # whose figures the report leads with, the budget holds on the worst of them
        self.providers = [s.name for s in compared_specs(options.providers)]
        self.fp32 = {
            s.role: self._predict(work.src, s.x) for s in (work.val, work.test) if s is not None
        }
        self.placement = Placement(options.placement)
        return_freed_memory()  # what loading and pre-processing freed, before calibration

    @property
    def kept_out(self) -> list[str]:
        """Nodes every attempt keeps in FP32: the user's and the placement's."""
        return list(self.options.exclude_nodes) + list(self.placement.excluded)

    def _predict(self, path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
        """Predicted labels on every provider the checks run on."""
        out = {}
        for name in self.providers:
            session = make_session(path, [name], precision=self.options.precision)
            out[name] = predicted_labels(run_scores(session, self.work.io, x))
        return out

    def first(self) -> Attempt:
        """ORT's quantisation with the Q/DQ placement decided from the graph, measured."""
        options, job = self.options, self.job
        if options.fmt != "qdq":
            self.placement = Placement("ort")
            self.work.notes.append("Q/DQ placement is decided for the QDQ format only")
            self.work.settings.placement = self.placement.record()
            return self.attempt([], "0")

        def quantize(exclude: list[str], out: Path) -> None:
            quantize_once(job, out, exclude, "qdq")

        exclude = list(options.exclude_nodes)
        if options.placement != "ort":
            exclude += [n for n in self.fixed_convs() if n not in exclude]
        path, self.placement = place(quantize, exclude, job.op_types, self.tmp, options.placement)
        self.work.settings.placement = self.placement.record()
        return_freed_memory()  # what calibration freed, before the error analysis
        if self.placement.excluded:
            info(
                f"Q/DQ placement: {len(self.placement.excluded)} node(s) ONNX Runtime runs in "
                "float kept out of quantisation"
            )
        return self.measure(path, path, [])

    def fixed_convs(self) -> list[str]:
        """The one-hot gather Convs (role `fixed`), kept in float: they move pixels and do no
        arithmetic of the model, and as integer kernels they take ORT's grouped QLinearConv
        path with a channel multiplier, which made the medium SASA's INT8 model slower than
        its FP32 one (benchmarks/seed_paper.py)."""
        names = fixed_conv_names(onnx.load(str(self.job.pre_path), load_external_data=False))
        if names:
            self.work.notes.append(
                f"{len(names)} fixed (one-hot gather) Conv(s) kept in float: data movement"
            )
        return names

    def attempt(self, extra: list[str], tag: str) -> Attempt:
        """Quantise keeping the user's, the placement's and `extra` nodes in FP32; measure."""
        exclude = self.kept_out + extra
        q_path = self.tmp / f"q_{tag}.onnx"
        quantize_once(self.job, q_path, exclude, self.options.fmt)
        qdq_path = q_path
        if self.options.fmt != "qdq":  # the error analysis reads QDQ models: measure the twin
            qdq_path = self.tmp / f"qdq_{tag}.onnx"
            quantize_once(self.job, qdq_path, exclude, "qdq")
        return self.measure(q_path, qdq_path, extra)

    def measure(self, q_path: Path, qdq_path: Path, extra: list[str]) -> Attempt:
        """Per-tensor error and validation accuracy of one quantised model."""
        work = self.work
        x = work.calib_x[work.debug_index]
        errors = tensor_errors(
            self.job.pre_path, qdq_path, work.io, x, self.graph, self.tmp, self.memory
        )
        acc = agree = per = None
        if work.val is not None:
            y, fp32 = work.val.data.y, self.fp32["budget"]
            per = {
                name: (float(np.mean(pred == y)), float(np.mean(pred == fp32[name])))
                for name, pred in self._predict(q_path, work.val.x).items()
            }
            acc, agree = per[self.providers[0]]
        return Attempt(q_path, extra, errors, acc, agree, per)

    def drop_pp(self, attempt: Attempt) -> float | None:
        """Validation accuracy drop in percentage points (what the budget is judged on): the
        worst over the providers checked."""
        if attempt.per_provider is None or self.work.val is None:
            return None
        return max(
            round(100.0 * (self._fp32_accuracy(self.work.val, name) - acc), 6)
            for name, (acc, _) in attempt.per_provider.items()
        )

    def split_accuracy(
        self, split: Labelled | None, path: Path
    ) -> tuple[SplitAccuracy | None, list[dict]]:
        """FP32 vs INT8 accuracy of the model at `path` on one labelled split: the first
        provider's, and one row per provider checked."""
        if split is None:
            return None, []
        preds = self._predict(path, split.x)
        rows = []
        for name, pred in preds.items():
            fp32 = self._fp32_accuracy(split, name)
            int8 = float(np.mean(pred == split.data.y))
            rows.append(
                SplitAccuracy(
                    data=f"{split.data.spec}:{split.data.split}",
                    split=split.data.split,
                    role=split.role,
                    samples=len(split.x),
                    fp32=fp32,
                    int8=int8,
                    drop_pp=round(100.0 * (fp32 - int8), 6),
                    top1_agreement=float(np.mean(pred == self.fp32[split.role][name])),
                )
            )
        per_provider = [
            {"provider": name, "precision": self.options.precision, **asdict(row)}
            for name, row in zip(preds, rows, strict=True)
        ]
        return rows[0], per_provider

    def _fp32_accuracy(self, split: Labelled, provider: str) -> float:
        return float(np.mean(self.fp32[split.role][provider] == split.data.y))


def return_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc's malloc_trim; a no-op elsewhere).

    glibc keeps memory that Python and protobuf freed in its heap: after loading and
    pre-processing a 100 MB model the process holds ~300 MB it no longer uses, on top of
    which calibration would then build its own peak."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    gc.collect()
    trim(0)


def _structure(model: onnx.ModelProto) -> onnx.GraphProto:
    """The graph's nodes, inputs and initializer names without tensor data."""
    graph = onnx.GraphProto()
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    for t in model.graph.initializer:
        graph.initializer.add(name=t.name, data_type=t.data_type, dims=t.dims)
    return graph
