"""Per-tensor error of an INT8 model against its FP32 source (qdq_loss_debug's SQNR, streamed).

Both models run on the same samples with the matched intermediate tensors exposed, a few
samples at a time within a memory bound; each measured tensor gets its SQNR and the
quantisation noise its own node adds, and is mapped to the nodes that would have to stay in
FP32 to remove that noise. The figures are those of onnxruntime's `qdq_loss_debug` (same
tensor pairing, same formula), without holding every tensor of every sample at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization.quant_utils import DEQUANT_OUTPUT_SUFFIX, QUANT_INPUT_SUFFIX

from qtool.evaluation.model_io import ModelIO
from qtool.quantization.calibration import batches
from qtool.quantization.quantizer import quiet_ort_logging

SQNR_CAP_DB = 200.0  # identical tensors give ~300 dB (norm / float eps); reported capped
DEFAULT_MEMORY_BYTES = 1 << 30  # exposed tensors of both models held at a time


@dataclass
class TensorError:
    """Error of one activation tensor: FP32 model vs INT8 model on the same inputs (SQNR, dB).

    `sqnr_db` compares the FP32 tensor with the INT8 model's dequantised tensor (cumulative
    error up to here, qdq_loss_debug's `xmodel_err`). `added_noise` is the quantisation noise
    power this node adds, relative to the signal power: 10^(-SQNR/10) of its output minus the
    worst of its inputs (unmeasured float inputs count as noise-free). A wrecked layer adds
    ~1 (100 %), a healthy one 1e-4 or less; the accuracy-aware loop ranks by it, and so does
    the report's "worst first". (qdq_loss_debug's own `qdq_err` is not reported: where ORT folds a
    Relu into the quantiser it compares pre-Relu with post-Relu values and reads as noise.)
    """

    tensor: str
    node: str
    op_type: str
    sqnr_db: float
    added_noise: float
    # nodes kept FP32 if this tensor is chosen: its producer (with unmeasured producers that
    # feed it, e.g. a Conv whose Relu ORT fused into the quantiser) and its consumers, since
    # ORT puts a Q/DQ pair on a tensor when either side of it is quantised
    nodes: list[str] = field(default_factory=list)
    module: str | None = None  # the torch module that computed it (exported models), if known


def with_modules(errors: list[TensorError], metadata: dict[str, str]) -> list[TensorError]:
    """Name each tensor's source module: from the exporter's map recorded in the model's
    metadata (qtool.tensor_modules), else from a TorchScript-style node name."""
    from qtool.exporters.modules import TENSOR_MODULES_KEY, scope_of_node_name

    try:
        mapping = json.loads(metadata.get(TENSOR_MODULES_KEY) or "{}")
    except json.JSONDecodeError:
        mapping = {}
    mapping = mapping if isinstance(mapping, dict) else {}
    for error in errors:
        found = mapping.get(error.tensor)
        error.module = found if isinstance(found, str) else scope_of_node_name(error.node)
    return errors


def tensor_errors(
    float_path: Path,
    qdq_path: Path,
    io: ModelIO,
    x: np.ndarray,
    graph: onnx.GraphProto,
    tmp: Path,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> list[TensorError]:
    """Per-tensor SQNR (streamed, see `measure_sqnr`), with each tensor mapped to the nodes
    producing it; the tensors whose nodes add the most noise first."""
    sqnr = measure_sqnr(float_path, qdq_path, io, x, tmp, memory_bytes)
    noise = NoiseMap(graph, {t: 10.0 ** (-min(db, SQNR_CAP_DB) / 10) for t, db in sqnr.items()})
    result = []
    for tensor in noise.measured:
        node = noise.producer.get(tensor)
        if node is None:  # a graph input: no node to keep in FP32
            continue
        result.append(
            TensorError(
                tensor=tensor,
                node=node.name,
                op_type=node.op_type,
                sqnr_db=round(float(min(sqnr[tensor], SQNR_CAP_DB)), 3),
                added_noise=float(f"{noise.added(tensor, node):.4g}"),
                nodes=noise.nodes_to_keep(tensor, node),
            )
        )
    # ties (often many 0-noise tensors) by name, so the report and the fallback loop never
    # depend on an order that a hash seed could change
    result.sort(key=lambda e: (-e.added_noise, e.sqnr_db, e.tensor))
    return result


def matched_tensors(float_graph: onnx.GraphProto, qdq_graph: onnx.GraphProto) -> dict[str, str]:
    """FP32 tensor -> the INT8 model's tensor holding its dequantised value.

    The pairing is qdq_loss_debug's (`create_activation_matching`): `X` is compared with the
    output `X_DequantizeLinear_Output` (or `..._1`) of the Q/DQ pair ORT put on it, or, where
    ORT renamed the producer's output to `X_QuantizeLinear_Input`, with `X` itself.
    """
    float_tensors = _tensors(float_graph)
    qdq_tensors = _tensors(qdq_graph)
    pairs: dict[str, str] = {}
    for node in qdq_graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        out = node.output[0]
        for suffix in (DEQUANT_OUTPUT_SUFFIX, DEQUANT_OUTPUT_SUFFIX + "_1"):
            pre = out[: -len(suffix)]
            if out.endswith(suffix) and pre in qdq_tensors and pre in float_tensors:
                pairs.setdefault(pre, out)
    for name in sorted(qdq_tensors):
        pre = name[: -len(QUANT_INPUT_SUFFIX)]
        if name.endswith(QUANT_INPUT_SUFFIX) and pre in qdq_tensors and pre in float_tensors:
            pairs.setdefault(pre, pre)
    return pairs


def _tensors(graph: onnx.GraphProto) -> set[str]:
    return {o for n in graph.node for o in n.output if o} | {i.name for i in graph.input}


def measure_sqnr(
    float_path: Path,
    qdq_path: Path,
    io: ModelIO,
    x: np.ndarray,
    tmp: Path,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> dict[str, float]:
    """SQNR in dB (FP32 tensor vs the INT8 model's dequantised one) of each matched tensor.

    Streamed: both models run on the same few samples at a time, exposing only the matched
    tensors, and each tensor's signal and error energy are summed before the next samples
    run, so memory is bounded by `memory_bytes` (at least one sample at a time) instead of
    growing with samples x tensors as qdq_loss_debug's collect-everything run does. The
    result is qdq_loss_debug's xmodel_err: 20 log10(||x|| / ||x - y||) over all samples.
    """
    float_graph = onnx.load(str(float_path), load_external_data=False).graph
    qdq_model = onnx.load(str(qdq_path), load_external_data=False)
    pairs = matched_tensors(float_graph, qdq_model.graph)
    if not pairs:
        return {}
    names = sorted(pairs)
    dtypes = _dq_dtypes(qdq_model.graph)
    del float_graph, qdq_model
    aug_f = _exposing(float_path, names, dtypes, tmp / "debug_fp32.onnx")
    aug_q = _exposing(qdq_path, [pairs[n] for n in names], dtypes, tmp / "debug_int8.onnx")
    signal = np.zeros(len(names))
    error = np.zeros(len(names))
    with quiet_ort_logging():
        runs = _PairedRuns(_debug_session(aug_f), _debug_session(aug_q), names, pairs, io)
        for f_out, q_out in runs.over(x, memory_bytes):
            for i, (a, b) in enumerate(zip(f_out, q_out, strict=True)):
                a, b = a.reshape(-1), b.reshape(-1)
                signal[i] += float(np.dot(a, a))
                diff = a - b
                error[i] += float(np.dot(diff, diff))
    eps = np.finfo("float").eps
    return {
        name: 20 * math.log10(max(math.sqrt(s), eps) / max(math.sqrt(e), eps))
        for name, s, e in zip(names, signal, error, strict=True)
    }


class _PairedRuns:
    """The FP32 and INT8 debug sessions run on the same samples, a few at a time."""

    def __init__(
        self,
        fp32: ort.InferenceSession,
        int8: ort.InferenceSession,
        names: list[str],
        pairs: dict[str, str],
        io: ModelIO,
    ) -> None:
        self.fp32, self.int8, self.io = fp32, int8, io
        self.names, self.q_names = names, [pairs[n] for n in names]

    def run(self, part: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        feed = {self.io.input_name: part}
        return self.fp32.run(self.names, feed), self.int8.run(self.q_names, feed)

    def over(self, x: np.ndarray, memory_bytes: int) -> Iterator[tuple[list, list]]:
        """Exposed tensors of both models, batch by batch. A static-batch model gets its own
        batch size (wrapping); otherwise the first run takes one sample and measures what one
        sample's exposed tensors take (counted twice: ORT's buffer and the numpy copy it
        returns), and later runs take as many samples as fit in `memory_bytes`."""
        fixed = self.io.fixed_batch
        if fixed:
            for part in batches(x, fixed, fixed):
                yield self.run(part)
            return
        start, step = 0, 1
        while start < len(x):
            part = x[start : start + step]
            f_out, q_out = self.run(part)
            start += len(part)
            per_sample = 2 * sum(a.nbytes for a in f_out + q_out) / len(part)
            yield f_out, q_out
            del f_out, q_out
            step = max(1, int(memory_bytes // max(per_sample, 1.0)))


def _dq_dtypes(graph: onnx.GraphProto) -> dict[str, int]:
    """Element type of each DequantizeLinear output (its scale's type; float by default)."""
    scales = {t.name: t.data_type for t in graph.initializer}
    out = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and len(node.input) > 1:
            out[node.output[0]] = scales.get(node.input[1], onnx.TensorProto.FLOAT)
    return out


def _exposing(src: Path, names: list[str], dtypes: dict[str, int], dst: Path) -> Path:
    """A copy of `src` whose graph outputs are `names` (intermediate tensors made visible)."""
    model = onnx.load(str(src))
    del model.graph.output[:]
    for name in names:
        dtype = dtypes.get(name, onnx.TensorProto.FLOAT)
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, dtype, None))
    onnx.save(model, str(dst))
    return dst


def _debug_session(path: Path) -> ort.InferenceSession:
    """A session that runs the graph as written (like qdq_loss_debug: no fusion, so the INT8
    model's Q/DQ arithmetic is what the exposed tensors show)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class NoiseMap:
    """Relative noise power of the measured tensors, traced through the graph's wiring."""

    def __init__(self, graph: onnx.GraphProto, measured: dict[str, float]):
        self.measured = measured
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list[str]] = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n.name)
        self.inits = {t.name for t in graph.initializer}
        self._memo: dict[str, float] = {}

    def upstream(self, tensor: str) -> float:
        """Relative noise of `tensor` or, when unmeasured, of what feeds it (graph input: 0)."""
        if tensor in self._memo:
            return self._memo[tensor]
        node = self.producer.get(tensor)
        if tensor in self.measured:
            value = self.measured[tensor]
        elif node is None:
            value = 0.0
        else:
            value = self.inputs_noise(node)
        self._memo[tensor] = value
        return value

    def inputs_noise(self, node: onnx.NodeProto) -> float:
        values = [self.upstream(i) for i in node.input if i and i not in self.inits]
        return max(values) if values else 0.0

    def added(self, tensor: str, node: onnx.NodeProto) -> float:
        """Noise `node` adds on top of the worst of its inputs (never below 0)."""
        return max(0.0, self.measured[tensor] - self.inputs_noise(node))

    def segment(self, node: onnx.NodeProto) -> list[str]:
        """The node plus unmeasured producers feeding it (e.g. a Conv whose Relu was fused)."""
        out, stack, seen = [], [node], set()
        while stack:
            n = stack.pop()
            if n.name in seen:
                continue
            seen.add(n.name)
            out.append(n.name)
            for i in n.input:
                p = self.producer.get(i)
                if p is not None and i not in self.measured and i not in self.inits:
                    stack.append(p)
        return out

    def nodes_to_keep(self, tensor: str, node: onnx.NodeProto) -> list[str]:
        """The producer's segment and the tensor's consumers: ORT puts Q/DQ on a tensor when
        either side of it is quantised, so both sides must stay FP32 to remove its noise."""
        return self.segment(node) + [c for c in self.consumers.get(tensor, []) if c != node.name]
