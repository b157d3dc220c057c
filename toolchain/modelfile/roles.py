"""The role of each initializer (weight, bias, qparam, other), decided by graph use, not names."""

from __future__ import annotations

import onnx

from qtool.modelfile.locate import graph_nodes

TensorKey = tuple[str, str]  # (graph path, tensor name), as qtool.modelfile.locate names them


def initializer_roles(graph: onnx.GraphProto) -> dict[str, str]:
    """Role of each initializer by how the graph uses it: weight, bias, qparam or other."""
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
                roles.setdefault(dq.input[0] if dq is not None else source(w), "weight")
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
