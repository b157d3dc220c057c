"""The shared operation counter: op forms, MACs by hand, activation bytes."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from qtool.runtimes.opcount import activation_bytes, base_op, node_macs, static_shapes


def test_base_op_maps_quantised_and_fused_forms():
    cases = {
        "QLinearConv": "Conv", "ConvInteger": "Conv", "FusedConv": "Conv",
        "NhwcQLinearConv": "Conv", "QGemm": "Gemm", "FusedGemm": "Gemm",
        "MatMulIntegerToFloat": "MatMul", "MatMulInteger": "MatMul", "QLinearMatMul": "MatMul",
        "QLinearAdd": "Add", "QLinearConcat": "Concat", "QuantizeLinear": "QuantizeLinear",
        "Relu": "Relu",
    }  # fmt: skip
    assert {k: base_op(k) for k in cases} == cases


def test_macs_by_hand():
    shapes = {"x": [1, 2, 5, 5], "w": [3, 2, 3, 3], "y": [1, 3, 5, 5], "a": [4, 6], "b": [6, 7]}
    shapes |= {"g": [4, 7], "t": [6, 4], "xq": [1, 2, 5, 5]}
    conv = helper.make_node("Conv", ["x", "w"], ["y"])
    qconv = helper.make_node("QLinearConv", ["xq", "s", "z", "w", "ws", "wz", "ys", "yz"], ["y"])
    gemm = helper.make_node("Gemm", ["a", "b"], ["g"])
    gemm_t = helper.make_node("Gemm", ["t", "b"], ["g"], transA=1)
    relu = helper.make_node("Relu", ["x"], ["y"])
    unknown = helper.make_node("MatMul", ["nope", "b"], ["g"])
    assert node_macs(conv, shapes) == node_macs(qconv, shapes) == 75 * 18
    assert node_macs(gemm, shapes) == node_macs(gemm_t, shapes) == 4 * 7 * 6
    assert node_macs(relu, shapes) == 0 and node_macs(unknown, shapes) == 0  # not guessed


def test_activation_bytes_and_symbolic_batch():
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Cast", ["r"], ["c"], to=TensorProto.UINT8),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])],
        [helper.make_tensor_value_info("c", TensorProto.UINT8, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert activation_bytes(model) == 12 * 4 + 12 * 1  # float relu, uint8 cast
    assert activation_bytes(model, batch=5) == 5 * 60
    assert static_shapes(model, batch=2)["r"] == [2, 3, 4]
    assert np.prod(static_shapes(model)["c"]) == 12
