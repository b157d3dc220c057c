"""The role of each initializer (weight, bias, qparam, fixed, other), by graph use, not names.

`fixed`: the weights of a Conv that only moves data (each output channel copies one input
pixel: one 1, every other weight 0), such as the neighbourhood gather of qtool's
self-attention export. They are not learned, so they are not parameters, FLOPs or flip
targets. `mark_fixed_convs` finds such Convs once, by their values, when qtool exports a
model and records it on the node (metadata_props `qtool.role = fixed`); roles are then read
from the graph alone (the flip stages see nodes, not initializer values), and the mark
survives ONNX Runtime's pre-processing and QDQ quantisation, which keep node metadata.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

ROLE_KEY = "qtool.role"
FIXED = "fixed"


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


def is_fixed(node: onnx.NodeProto) -> bool:
    """True for a node marked `qtool.role = fixed` (see `mark_fixed_convs`)."""
    return any(p.key == ROLE_KEY and p.value == FIXED for p in node.metadata_props)


def is_selection(weight: np.ndarray) -> bool:
    """Conv weights (out, in/group, kh, kw) that only select: each output channel has exactly
    one weight 1 and all others 0."""
    if weight.ndim < 3 or not weight.size:
        return False
    flat = weight.reshape(weight.shape[0], -1)
    return bool(np.isin(flat, (0, 1)).all() and (flat.sum(axis=1) == 1).all())


def mark_fixed_convs(model: onnx.ModelProto) -> list[str]:
    """Mark every Conv whose weight initializer only selects pixels (`is_selection`) as fixed;
    return the names of their weights. Only Convs with one input channel per group are
    decoded (a gather is depthwise), so large dense weights are never read."""
    inits = {t.name: t for t in model.graph.initializer}
    marked: list[str] = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        tensor = inits[node.input[1]]
        if len(tensor.dims) < 3 or tensor.dims[1] != 1 or is_fixed(node):
            continue
        if is_selection(numpy_helper.to_array(tensor)):
            entry = node.metadata_props.add()
            entry.key, entry.value = ROLE_KEY, FIXED
            marked.append(tensor.name)
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
