"""The graph ORT runs and the dtype of each node, read from ORT itself."""

from __future__ import annotations

import numpy as np
import onnx
from builders import one_conv, qdq_quantize

from qtool.runtimes.executed import executed_graph, measure


def test_a_fused_qdq_conv_runs_in_int8_and_shapes_come_from_a_run(tmp_path):
    src, q = tmp_path / "conv.onnx", tmp_path / "conv.int8.onnx"
    onnx.save(one_conv(), str(src))
    qdq_quantize(src, q, np.random.default_rng(1).random((8, 2, 5, 5), np.float32))
    graph = executed_graph(q)
    ops = {n.op_type: n for n in graph.nodes}
    assert set(ops) == {"QuantizeLinear", "QLinearConv", "DequantizeLinear"}
    assert ops["QLinearConv"].name == "conv"  # ORT's fused node keeps the op's name
    assert graph.runs_in_int8(ops["QLinearConv"]) and not graph.runs_in_int8(ops["QuantizeLinear"])
    assert graph.types[ops["QLinearConv"].output[0]] == "tensor(uint8)"
    assert graph.conversions() == 2  # quantise x, dequantise y; the weight's DQ was folded
    measure(graph)
    assert graph.shapes["x"] == [1, 2, 5, 5] and graph.shapes["y"] == [1, 3, 5, 5]

    fp32 = executed_graph(one_conv())  # a ModelProto works too
    assert [n.op_type for n in fp32.nodes] == ["Conv"] and fp32.conversions() == 0
    assert not fp32.runs_in_int8(fp32.nodes[0])
