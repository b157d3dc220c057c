"""Operation counts of ONNX nodes: the one counter behind `inspect`'s FLOPs and analytic energy.

`node_macs` counts the multiply-accumulates of the matrix ops (Conv, Gemm, MatMul) in every
form ONNX Runtime writes them: the plain op, its integer forms (ConvInteger, QLinearConv,
MatMulInteger, QLinearMatMul, MatMulIntegerToFloat, QGemm) and its fused forms (FusedConv,
FusedGemm, FusedMatMul). `base_op` maps each of those names to the op it computes, so a new
quantised or fused form needs no new rule as long as its name says what it computes.

Shapes come from ONNX shape inference (`static_shapes`), with symbolic dims counted as the
given batch; ops whose shapes are unknown are skipped rather than guessed.
"""

from __future__ import annotations

import numpy as np
import onnx

CONV_OPS = ("Conv",)
MATMUL_OPS = ("MatMul", "Gemm")
# input index of the weight of each conv form: QLinearConv puts (x, x_scale, x_zp) first
WEIGHT_INPUT = {"QLinearConv": 3, "NhwcQLinearConv": 3}
# forms that take their first operand transposed with transA (QGemm shares Gemm's attributes)
GEMM_FORMS = ("Gemm", "QGemm", "FusedGemm")


def base_op(op_type: str) -> str:
    """The op a quantised or fused form computes: QLinearConv -> Conv, QGemm -> Gemm,
    MatMulIntegerToFloat -> MatMul, FusedConv -> Conv, QLinearAdd -> Add, ConvInteger -> Conv."""
    name = op_type
    for prefix in ("NhwcQLinear", "QLinear", "Fused", "Nhwc"):
        if name.startswith(prefix) and len(name) > len(prefix):
            name = name[len(prefix) :]
            break
    if name == "QGemm":
        return "Gemm"
    for suffix in ("IntegerToFloat", "Integer"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def node_macs(node: onnx.NodeProto, shapes: dict[str, list[int]]) -> int:
    """Multiply-accumulates of one Conv/Gemm/MatMul node in any of its forms (0 for others,
    and for nodes whose shapes are not known)."""
    op = base_op(node.op_type)
    try:
        if op in CONV_OPS:
            weight = shapes[node.input[WEIGHT_INPUT.get(node.op_type, 1)]]
            return int(np.prod(shapes[node.output[0]])) * int(np.prod(weight[1:]))
        if op in MATMUL_OPS:
            a = shapes[node.input[0]]
            k = a[-1]
            transposed = any(at.name == "transA" and at.i for at in node.attribute)
            if node.op_type in GEMM_FORMS and transposed:
                k = a[0]
            return int(np.prod(shapes[node.output[0]])) * int(k)
    except (KeyError, IndexError):
        return 0
    return 0


def static_shapes(model: onnx.ModelProto, batch: int = 1) -> dict[str, list[int]]:
    """Every tensor shape ONNX shape inference finds, symbolic dims counted as `batch`;
    initializers by their dims, and a DequantizeLinear output like its input."""
    shapes = {name: shape for name, (shape, _) in static_values(model, batch).items()}
    graph = model.graph
    for t in graph.initializer:
        shapes[t.name] = list(t.dims)
    for n in graph.node:
        if n.op_type == "DequantizeLinear" and n.output[0] not in shapes and n.input[0] in shapes:
            shapes[n.output[0]] = shapes[n.input[0]]
    return shapes


def activation_bytes(model: onnx.ModelProto, batch: int = 1) -> int:
    """Bytes of every node output whose shape and type are known, at `batch` samples: what a
    run that keeps every intermediate tensor holds (0 when nothing can be inferred)."""
    values = static_values(model, batch)
    total = 0
    for node in model.graph.node:
        for out in node.output:
            if out in values:
                shape, elem_type = values[out]
                itemsize = _itemsize(elem_type)
                total += int(np.prod(shape, dtype=np.int64)) * itemsize
    return total


def static_values(model: onnx.ModelProto, batch: int = 1) -> dict[str, tuple[list[int], int]]:
    """Shape and element type of every value ONNX shape inference knows (symbolic dims as
    `batch`). Value infos already in the graph (quant_pre_process writes them) are used as
    they are when they cover every node output; otherwise shapes are inferred, best-effort."""
    graph = model.graph
    outputs = {o for n in graph.node for o in n.output if o}
    known = {v.name for v in graph.value_info} | {v.name for v in graph.output}
    if not outputs <= known:
        try:
            graph = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
        except Exception:  # shape inference is best-effort on third-party models
            pass
    values: dict[str, tuple[list[int], int]] = {}
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        tensor = value.type.tensor_type
        if value.type.HasField("tensor_type") and tensor.HasField("shape"):
            shape = [d.dim_value if d.HasField("dim_value") else batch for d in tensor.shape.dim]
            values[value.name] = (shape, tensor.elem_type)
    return values


def _itemsize(elem_type: int) -> int:
    try:
        return int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)
    except (KeyError, TypeError, ValueError):
        return 4
