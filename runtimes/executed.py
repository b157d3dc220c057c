"""The graph ONNX Runtime actually runs on CPU, and the dtype each of its nodes computes in.

A QDQ model says where INT8 is allowed; what runs in INT8 is decided by ORT's graph
optimiser, which fuses a DequantizeLinear -> op -> QuantizeLinear group into an integer kernel
(QLinearConv, QGemm, QLinearAdd...) or drops the Q/DQ around data movement (Reshape, Slice on
uint8) only where its CPU provider has a kernel for it; elsewhere the op computes in float
between a DequantizeLinear and a QuantizeLinear. Rather than keep a list of what ORT fuses,
this module asks ORT: it optimises the model for the CPU provider
(`SessionOptions.optimized_model_filepath`), then builds a second session on that graph with
every intermediate tensor made a graph output, whose output list carries ORT's own type (and,
after one run, the shape) of every tensor.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from qtool.errors import QtoolError

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
INT8_TYPES = ("tensor(int8)", "tensor(uint8)")
OPTIMISATION_LEVEL = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # where QDQ fusion happens
NP_TYPES = {
    "float": np.float32,
    "double": np.float64,
    "float16": np.float16,
    "int8": np.int8,
    "uint8": np.uint8,
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
}
LEVEL_NAME = "extended (ORT_ENABLE_EXTENDED: the level at which ORT fuses Q/DQ groups)"


@dataclass
class ExecutedGraph:
    """ORT's optimised graph with the type of every tensor (and shapes once `measure`d)."""

    model: onnx.ModelProto
    types: dict[str, str]  # tensor -> "tensor(uint8)", "tensor(float)"...
    shapes: dict[str, list[int]] = field(default_factory=dict)
    batch: int = 1  # samples per call in `shapes` (the first input's own batch if it fixes one)
    level: str = LEVEL_NAME

    @property
    def nodes(self) -> list[onnx.NodeProto]:
        return list(self.model.graph.node)

    @property
    def initializers(self) -> dict[str, onnx.TensorProto]:
        return {t.name: t for t in self.model.graph.initializer}

    def is_int8(self, tensor: str) -> bool:
        return self.types.get(tensor) in INT8_TYPES

    def runs_in_int8(self, node: onnx.NodeProto) -> bool:
        """An op (not a Q/DQ conversion) that reads 8-bit data: an integer kernel, or data
        movement on 8-bit values."""
        if node.op_type in QDQ_OPS:
            return False
        return any(self.is_int8(i) for i in node.input if i)

    def conversions(self) -> int:
        """Q/DQ nodes left on activations (not folded into a kernel or a constant): each is a
        pass over a tensor at every inference."""
        inits = self.initializers
        return sum(
            1 for n in self.model.graph.node if n.op_type in QDQ_OPS and n.input[0] not in inits
        )


def executed_graph(
    model: str | Path | bytes | onnx.ModelProto, providers: list[str] | None = None
) -> ExecutedGraph:
    """Optimise `model` as ORT's CPU provider does and read back the type of every tensor."""
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    source = str(source) if isinstance(source, Path) else source
    with tempfile.TemporaryDirectory(prefix="qtool-executed-") as tmp:
        options = _options(ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        options.graph_optimization_level = OPTIMISATION_LEVEL
        options.optimized_model_filepath = str(Path(tmp) / "optimised.onnx")
        _session(source, options, providers)
        optimised = onnx.load(options.optimized_model_filepath)
    session = _exposing_session(optimised, providers)
    types = {o.name: o.type for o in session.get_outputs()}
    types.update({i.name: i.type for i in session.get_inputs()})
    for t in optimised.graph.initializer:
        types[t.name] = _tensor_type(t.data_type)
    return ExecutedGraph(optimised, types)


def measure(graph: ExecutedGraph, providers: list[str] | None = None) -> ExecutedGraph:
    """Fill `graph.shapes` by one run at batch 1 (zeros in every input): the exact shape of
    every tensor as ORT computes it. Inputs must have fixed sizes apart from the batch."""
    session = _exposing_session(graph.model, providers)
    feeds = {i.name: np.zeros(_batch_one(i), _np_type(i.type)) for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, feeds)
    graph.shapes = {n: list(v.shape) for n, v in zip(names, values, strict=True)}
    graph.shapes.update({k: list(v.shape) for k, v in feeds.items()})
    first = next(iter(feeds.values()), None)
    graph.batch = int(first.shape[0]) if first is not None and first.ndim else 1
    for t in graph.model.graph.initializer:
        graph.shapes[t.name] = list(t.dims)
    return graph


def _exposing_session(model: onnx.ModelProto, providers: list[str] | None) -> ort.InferenceSession:
    """A session on `model` (run as it is) whose outputs are every tensor its nodes make."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for out in node.output:
            if out and out not in present:
                exposed.graph.output.append(onnx.ValueInfoProto(name=out))
                present.add(out)
    options = _options(ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return _session(exposed.SerializeToString(), options, providers)


def _options(level: ort.GraphOptimizationLevel) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.log_severity_level = 3
    return options


def _session(source, options: ort.SessionOptions, providers) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(
            source, sess_options=options, providers=providers or ["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QtoolError(f"ONNX Runtime cannot load the model: {first}") from exc


def _batch_one(value: ort.NodeArg) -> list[int]:
    shape = []
    for i, dim in enumerate(value.shape):
        if isinstance(dim, int) and dim > 0:
            shape.append(dim)
        elif i == 0:
            shape.append(1)
        else:
            raise QtoolError(
                f"input {value.name!r} has a free dimension {dim!r} besides the batch; "
                "counting operations needs a fixed input size (export with a static shape)"
            )
    return shape


def _np_type(ort_type: str) -> type:
    name = ort_type.removeprefix("tensor(").removesuffix(")")
    return NP_TYPES.get(name, np.float32)


def _tensor_type(elem_type: int) -> str:
    """ORT's spelling of an ONNX element type: FLOAT -> tensor(float), UINT8 -> tensor(uint8)."""
    return f"tensor({onnx.TensorProto.DataType.Name(elem_type).lower()})"
