"""What an ONNX file holds: inputs, outputs, size, parameters, FLOPs, quantisation, ops."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper, numpy_helper

from qtool.modelfile.load import file_size, load_model
from qtool.modelfile.metadata import read_metadata
from qtool.modelfile.roles import FIXED, initializer_roles, is_fixed
from qtool.runtimes.opcount import node_macs, static_shapes

QOPERATOR_OPS = {
    "QLinearConv",
    "QLinearMatMul",
    "QGemm",
    "MatMulInteger",
    "ConvInteger",
    "QLinearAdd",
    "QLinearMul",
    "DynamicQuantizeMatMul",
}


QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


@dataclass
class ValueSpec:
    name: str
    dtype: str
    shape: list


@dataclass
class InitializerInfo:
    name: str
    dtype: str
    shape: list[int]
    bytes: int
    role: str


@dataclass
class ModelSummary:
    path: str
    file_bytes: int
    ir_version: int
    opset: int
    producer: str
    inputs: list[ValueSpec]
    outputs: list[ValueSpec]
    parameters: int
    flops: int
    quantization: str  # "QDQ", "QOperator" or "none"
    op_histogram: dict[str, int]
    initializers: list[InitializerInfo] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    energy: dict | None = None  # analytic energy (qtool.runtimes.analytic_energy), when asked


def dtype_name(elem_type: int) -> str:
    return onnx.TensorProto.DataType.Name(elem_type).lower()


def value_spec(value: onnx.ValueInfoProto) -> ValueSpec:
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        return ValueSpec(value.name, value.type.WhichOneof("value") or "unknown", [])
    shape = [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim
    ]
    return ValueSpec(value.name, dtype_name(tensor.elem_type), shape)


def graph_inputs(model: onnx.ModelProto) -> list[ValueSpec]:
    """Real inputs: graph inputs that are not also initializers (old exporters list both)."""
    inits = {t.name for t in model.graph.initializer}
    return [value_spec(v) for v in model.graph.input if v.name not in inits]


def quantization_kind(model: onnx.ModelProto) -> str:
    ops = {n.op_type for n in model.graph.node}
    if ops & QOPERATOR_OPS:
        return "QOperator"
    if ops & QDQ_OPS:
        return "QDQ"
    return "none"


def summarize(path: str | Path, model: onnx.ModelProto | None = None) -> ModelSummary:
    path = Path(path)
    model = model if model is not None else load_model(path)
    graph = model.graph
    roles = initializer_roles(graph)
    inits = [
        InitializerInfo(
            t.name,
            dtype_name(t.data_type),
            list(t.dims),
            _stored_bytes(t),
            roles.get(t.name, "other"),
        )
        for t in graph.initializer
    ]
    # quantisation parameters and fixed (data-moving, unlearned) weights are not parameters
    parameters = sum(
        int(np.prod(i.shape, dtype=np.int64)) for i in inits if i.role not in ("qparam", FIXED)
    )
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ModelSummary(
        path=str(path),
        file_bytes=file_size(path),
        ir_version=model.ir_version,
        opset=opset,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        inputs=graph_inputs(model),
        outputs=[value_spec(v) for v in graph.output],
        parameters=parameters,
        flops=count_flops(model),
        quantization=quantization_kind(model),
        op_histogram=dict(Counter(n.op_type for n in graph.node).most_common()),
        initializers=inits,
        metadata=read_metadata(model),
    )


def _stored_bytes(t: onnx.TensorProto) -> int:
    if external_data_helper.uses_external_data(t):
        info = external_data_helper.ExternalDataInfo(t)
        if info.length:
            return int(info.length)
    if t.raw_data:
        return len(t.raw_data)
    return int(numpy_helper.to_array(t).nbytes) if t.dims or t.data_type else 0


def count_fixed_flops(model: onnx.ModelProto, batch: int = 1) -> int:
    """Multiply-adds x2 that ONNX Runtime executes in Convs marked fixed (0 without any)."""
    if not any(is_fixed(n) for n in model.graph.node):
        return 0
    return count_flops(model, batch, fixed=True)


def count_flops(model: onnx.ModelProto, batch: int = 1, *, fixed: bool = False) -> int:
    """Multiply-adds x2 of Conv/Gemm/MatMul (and their quantised forms, and Mul->ReduceSum
    dot products) for one batch.

    Uses ONNX shape inference; symbolic dims count as `batch`. Ops whose shapes cannot be
    inferred are skipped rather than guessed. The counting is qtool.runtimes.opcount's, which
    analytic energy shares. Convs marked fixed (a one-hot gather: data
    movement written as a Conv, `qtool.modelfile.roles`) are not the model's arithmetic and
    are left out; `fixed=True` counts only them (what ONNX Runtime executes for them).
    """
    shapes = static_shapes(model, batch)
    graph = model.graph
    # Mul feeding ReduceSum (directly or through a Q/DQ pair) is a dot product written out
    # (e.g. local self-attention exported without MatMul): count it like a MatMul.
    producer = {o: n for n in graph.node for o in n.output}
    reduce_sum_inputs = {
        _through_qdq(n.input[0], producer)
        for n in graph.node
        if n.op_type == "ReduceSum" and n.input
    }
    total = 0
    for node in graph.node:
        if is_fixed(node) != fixed:
            continue
        out = node.output[0] if node.output else ""
        if node.op_type == "Mul" and out in reduce_sum_inputs and out in shapes:
            total += 2 * int(np.prod(shapes[out]))
            continue
        total += 2 * node_macs(node, shapes)
    return total


def _through_qdq(tensor: str, producer: dict[str, onnx.NodeProto]) -> str:
    """The float tensor a QuantizeLinear -> DequantizeLinear pair re-creates, else `tensor`."""
    dq = producer.get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear":
        return tensor
    q = producer.get(dq.input[0])
    return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else tensor
