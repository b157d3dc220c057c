"""Per-tensor error of an INT8 model against its FP32 source (SQNR via `qdq_loss_debug`).

Both models run on the same samples with every intermediate tensor exposed; each measured
tensor gets its SQNR and the quantisation noise its own node adds, and is mapped to the
nodes that would have to stay in FP32 to remove that noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from qtool.evaluation.model_io import ModelIO
from qtool.quantization.calibration import CALIB_BATCH, batches, reader
from qtool.quantization.quantizer import quiet_ort_logging

SQNR_CAP_DB = 200.0  # identical tensors give ~300 dB (norm / float eps); reported capped


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


def tensor_errors(
    float_path: Path, qdq_path: Path, io: ModelIO, x: np.ndarray, graph: onnx.GraphProto, tmp: Path
) -> list[TensorError]:
    """Per-tensor SQNR via qdq_loss_debug, with each tensor mapped to the nodes producing it;
    the tensors whose nodes add the most noise first."""
    sqnr = measure_sqnr(float_path, qdq_path, io, x, tmp)
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
    # ties (often many 0-noise tensors) by name: qdq_loss_debug collects them in an order that
    # follows PYTHONHASHSEED, and the report and the fallback loop must not
    result.sort(key=lambda e: (-e.added_noise, e.sqnr_db, e.tensor))
    return result


def measure_sqnr(
    float_path: Path, qdq_path: Path, io: ModelIO, x: np.ndarray, tmp: Path
) -> dict[str, float]:
    """SQNR in dB (FP32 tensor vs the INT8 model's dequantised one) of each matched tensor."""
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    aug_f, aug_q = tmp / "debug_fp32.onnx", tmp / "debug_int8.onnx"
    parts = batches(x, CALIB_BATCH, io.fixed_batch)
    with quiet_ort_logging():
        modify_model_output_intermediate_tensors(str(float_path), str(aug_f))
        modify_model_output_intermediate_tensors(str(qdq_path), str(aug_q))
        float_acts = collect_activations(str(aug_f), reader(io.input_name, parts))
        qdq_acts = collect_activations(str(aug_q), reader(io.input_name, parts))
    matched = create_activation_matching(qdq_acts, float_acts)
    matched = {k: v for k, v in matched.items() if v.get("float")}
    return {t: e["xmodel_err"] for t, e in compute_activation_error(matched).items()}


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
