"""The role of each initializer (weight, bias, qparam, fixed, other), by graph use, not names.

`fixed`: the weights of a Conv that only moves data (each output channel copies one input
pixel: one 1, every other weight 0), such as the neighbourhood gather of qtool's
self-attention export. They are not learned, so they are not parameters, FLOPs or flip
targets. `mark_fixed_convs` finds such Convs by their values when qtool exports or
quantises a model and records it on the node (metadata_props `qtool.role = fixed`); roles
are then read from the graph alone (the flip stages see nodes, not initializer values).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from qtool.modelfile.locate import graph_nodes

ROLE_KEY = "qtool.role"
FIXED = "fixed"

TensorKey = tuple[str, str]  # (graph path, tensor name), as qtool.modelfile.locate names them


def initializer_roles(graph: onnx.GraphProto) -> dict[str, str]:
    """Role of each initializer by how the graph uses it: weight, bias, qparam, fixed or
    other (initializers that nothing here recognises are left out)."""
    roles: dict[str, str] = {}
    producers_of_dq = {}
    producers = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            producers_of_dq[node.output[0]] = node

    def source(name: str) -> str:
        """Follow Cast/Transpose/Reshape/... (and DequantizeLinear) back to a stored tensor."""
        for _ in range(16):
            node = producers.get(name)
            if node is None or node.op_type not in _PASS_THROUGH or not node.input:
                break
            name = node.input[0]
        return name

    for node in graph.node:
        op, ins = node.op_type, list(node.input)
        if op in _EXTRA_ROLES:  # QGemm, DynamicQuantizeMatMul, recurrent layers, ...
            for i, name in enumerate(ins):
                role = _EXTRA_ROLES[op].get(i)
                if name and role:
                    roles.setdefault(source(name) if role != "qparam" else name, role)
            continue
        if op in ("QuantizeLinear", "DequantizeLinear"):
            for name in ins[1:]:
                roles.setdefault(name, "qparam")
        elif op in ("QLinearConv", "QLinearMatMul"):
            for i, name in enumerate(ins):
                if op == "QLinearConv" and i == 3 or op == "QLinearMatMul" and i == 3:
                    roles.setdefault(name, "weight")
                elif op == "QLinearConv" and i == 8:
                    roles.setdefault(name, "bias")
                elif i != 0:
                    roles.setdefault(name, "qparam")
        elif op in ("ConvInteger", "MatMulInteger"):
            if len(ins) > 1:
                roles.setdefault(ins[1], "weight")
            for name in ins[2:]:
                roles.setdefault(name, "qparam")
        if op in ("Conv", "Gemm", "MatMul", "ConvTranspose"):
            if len(ins) > 1:
                w = ins[1]
                dq = producers_of_dq.get(w)
                role = FIXED if is_fixed(node) else "weight"
                roles.setdefault(dq.input[0] if dq is not None else source(w), role)
            if op in ("Conv", "Gemm", "ConvTranspose") and len(ins) > 2 and ins[2]:
                b = ins[2]
                dq = producers_of_dq.get(b)
                roles.setdefault(dq.input[0] if dq is not None else source(b), "bias")
    return roles


def graph_roles(
    model_bytes: bytes | bytearray,
) -> tuple[dict[TensorKey, str], dict[TensorKey, list[str]]]:
    """(graph, name) -> role, and (graph, name) -> names of the nodes that read it.

    A subgraph's nodes may use tensors of the graphs around it, so each graph's roles take
    the nodes of its subgraphs into account too.
    """
    skeletons = {
        path: onnx.GraphProto.FromString(data) for path, data in graph_nodes(model_bytes).items()
    }
    roles: dict[TensorKey, str] = {}
    readers: dict[TensorKey, list[str]] = {}
    for path in skeletons:
        merged = onnx.GraphProto()
        for sub, graph in skeletons.items():
            if sub == path or sub.startswith(path + "/"):
                merged.node.extend(graph.node)
        for name, role in initializer_roles(merged).items():
            roles[(path, name)] = role
        for node in merged.node:
            for name in node.input:
                readers.setdefault((path, name), []).append(node.name or node.op_type)
    return roles, readers


def is_fixed(node: onnx.NodeProto) -> bool:
    """True for a node marked `qtool.role = fixed` (see `mark_fixed_convs`)."""
    return any(p.key == ROLE_KEY and p.value == FIXED for p in node.metadata_props)


def is_selection(weight: np.ndarray) -> bool:
    """Conv weights (out, in/group, kh, kw) that only select: each output channel has exactly
    one weight 1 and all others 0 (dequantised int8 weights: 1 within int8 rounding)."""
    if weight.ndim < 3 or not weight.size:
        return False
    flat = weight.reshape(weight.shape[0], -1)
    ones = np.abs(flat - 1) <= SELECTION_TOLERANCE
    return bool(((flat == 0) | ones).all() and (ones.sum(axis=1) == 1).all())


SELECTION_TOLERANCE = 1e-3  # 127 * (1/127) in float32 is 1 within 1e-7; int8 steps are 8e-3


def _conv_weight(
    inits: dict[str, onnx.TensorProto], producers: dict[str, onnx.NodeProto], name: str
) -> np.ndarray | None:
    """A Conv's weight values: an initializer, or a DequantizeLinear of initializers (QDQ);
    None when they are computed or stored elsewhere. Only tensors with one input channel per
    group (a gather is depthwise) are decoded, so large dense weights are never read."""
    dq = producers.get(name)
    if dq is not None and dq.op_type == "DequantizeLinear":
        if not all(i in inits and _in_memory(inits[i]) for i in dq.input[:3] if i):
            return None
        if len(inits[dq.input[0]].dims) < 3:
            return None
        if inits[dq.input[0]].dims[1] != 1:
            return None
        x, scale = (numpy_helper.to_array(inits[i]) for i in dq.input[:2])
        zero = numpy_helper.to_array(inits[dq.input[2]]) if len(dq.input) > 2 else 0
        shape = (-1,) + (1,) * (x.ndim - 1)
        scale, zero = np.reshape(scale, shape), np.reshape(zero, shape)
        return (x.astype(np.float64) - zero.astype(np.float64)) * scale
    tensor = inits.get(name)
    if tensor is None or len(tensor.dims) < 3 or tensor.dims[1] != 1 or not _in_memory(tensor):
        return None
    return numpy_helper.to_array(tensor)


def _in_memory(tensor: onnx.TensorProto) -> bool:
    """False for a tensor whose data is in an external file not loaded here (the values of a
    model read without its external data are not looked at)."""
    return tensor.data_location != onnx.TensorProto.EXTERNAL


def fixed_conv_names(model: onnx.ModelProto) -> list[str]:
    """Names of the Convs that only select pixels: marked `fixed`, or found by their values
    (a model whose node metadata was dropped, e.g. by ORT's pre-processing). Marks `model`."""
    marked = [n.name for n in model.graph.node if is_fixed(n)]
    return marked + mark_fixed_convs(model)


def mark_fixed_convs(model: onnx.ModelProto) -> list[str]:
    """Mark every Conv whose weights only select pixels (`is_selection`), stored as FP32 or
    as int8 behind a DequantizeLinear, as fixed; return the marked nodes' names.

    qtool export marks its models, and qtool quantize marks its output again (ONNX
    Runtime's graph optimisation in pre-processing does not keep node metadata).
    """
    inits = {t.name: t for t in model.graph.initializer}
    producers = {out: n for n in model.graph.node for out in n.output}
    marked: list[str] = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or is_fixed(node):
            continue
        weight = _conv_weight(inits, producers, node.input[1])
        if weight is not None and is_selection(weight):
            entry = node.metadata_props.add()
            entry.key, entry.value = ROLE_KEY, FIXED
            marked.append(node.name)
    return marked


_PASS_THROUGH = {
    "Cast",
    "Transpose",
    "Reshape",
    "Identity",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "DequantizeLinear",
}


_EXTRA_ROLES: dict[str, dict[int, str]] = {
    "QGemm": {
        1: "qparam",
        2: "qparam",
        3: "weight",
        4: "qparam",
        5: "qparam",
        6: "bias",
        7: "qparam",
        8: "qparam",
    },
    "DynamicQuantizeMatMul": {1: "weight", 2: "qparam", 3: "qparam", 4: "bias"},
    "MatMulIntegerToFloat": {
        1: "weight",
        2: "qparam",
        3: "qparam",
        4: "qparam",
        5: "qparam",
        6: "bias",
    },
    "LSTM": {1: "weight", 2: "weight", 3: "bias"},
    "GRU": {1: "weight", 2: "weight", 3: "bias"},
    "RNN": {1: "weight", 2: "weight", 3: "bias"},
}
