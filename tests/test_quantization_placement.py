"""Q/DQ placement read from the graph ONNX Runtime runs: real quantize_static runs on small
graphs where ORT computes a wrapped node in float (BatchNormalization) or where that node feeds
8-bit data movement (Pad -> Slice -> Concat)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from builders import qdq_quantize
from onnx import TensorProto, helper, numpy_helper

from qtool.quantization.placement import (
    FLOAT,
    KERNEL,
    MOVEMENT,
    _isolated_movement,
    classify,
    place,
)
from qtool.quantization.quantizer import op_types_to_quantize
from qtool.runtimes.executed import ExecutedGraph, executed_graph

OP_TYPES = op_types_to_quantize([])


def _model(middle: list[onnx.NodeProto], inits: list, out: str, width: int) -> onnx.ModelProto:
    """x -> conv1 -> `middle` -> conv2, random weights from one seed."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.5, (4, width, 3, 3)).astype(np.float32), "w2"),
        *inits,
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1] * 4),
        *middle,
        helper.make_node("Conv", [out, "w2"], ["y"], name="conv2", pads=[1] * 4),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return onnx.shape_inference.infer_shapes(model)


def _batch_norm() -> onnx.ModelProto:
    params = [
        numpy_helper.from_array(np.full(4, v, np.float32), n)
        for n, v in (("s", 1.5), ("b", 0.1), ("m", 0.2), ("v", 2.0))
    ]
    bn = helper.make_node("BatchNormalization", ["a", "s", "b", "m", "v"], ["c"], name="bn")
    return _model([bn], params, "c", 4)


def _pad_slices() -> onnx.ModelProto:
    consts = {"pads": [0, 0, 1, 1, 0, 0, 1, 1], "s0": [0], "e0": [8], "s1": [2], "e1": [10]}
    consts["ax"] = [2]
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in consts.items()]
    middle = [
        helper.make_node("Pad", ["a", "pads"], ["p"], name="pad"),
        helper.make_node("Slice", ["p", "s0", "e0", "ax"], ["q0"], name="slice0"),
        helper.make_node("Slice", ["p", "s1", "e1", "ax"], ["q1"], name="slice1"),
        helper.make_node("Concat", ["q0", "q1"], ["c"], name="cat", axis=1),
    ]
    return _model(middle, inits, "c", 8)


def _quantizer(src: Path):
    x = np.random.default_rng(1).random((16, 1, 8, 8), np.float32)
    return lambda exclude, out: qdq_quantize(src, out, x, exclude)


def _setup(tmp_path: Path, model: onnx.ModelProto):
    src = tmp_path / "fp32.onnx"
    onnx.save(model, str(src))
    return _quantizer(src)


def test_a_node_ort_runs_in_float_is_kept_out_of_quantisation(tmp_path):
    quantize = _setup(tmp_path, _batch_norm())
    path, placement = place(quantize, [], OP_TYPES, tmp_path)
    assert placement.excluded == ["bn"] and placement.float_kept == []
    first, chosen = placement.rounds
    assert chosen.accepted and chosen.excluded == ["bn"]
    assert chosen.file_bytes < first.file_bytes  # its Q/DQ pairs are gone from the file
    assert chosen.conversions <= first.conversions
    assert placement.kinds == {KERNEL: 2}  # what is left wrapped runs as integer kernels
    model = onnx.load(str(path))
    by_name = {n.name: n for n in model.graph.node}
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    bn_inputs = by_name["bn"].input
    assert all(producers.get(i) != "DequantizeLinear" for i in bn_inputs[1:])  # float params


def test_a_float_node_feeding_8bit_data_movement_stays_wrapped(tmp_path):
    quantize = _setup(tmp_path, _pad_slices())
    path, placement = place(quantize, [], OP_TYPES, tmp_path)
    # excluding the Pad would move the quantiser's boundary past its two Slices
    assert placement.excluded == [] and placement.float_kept == ["pad"]
    assert placement.kinds == {FLOAT: 1, MOVEMENT: 2, KERNEL: 3}
    assert len(placement.rounds) == 1 and path.name == "placement_0.onnx"
    graph = executed_graph(path)
    kinds = classify(onnx.load(str(path)), graph, set(OP_TYPES), set())
    assert kinds["slice0"] == MOVEMENT and kinds["cat"] == KERNEL and kinds["pad"] == FLOAT


def test_ort_mode_keeps_the_full_placement_and_user_exclusions_are_honoured(tmp_path):
    quantize = _setup(tmp_path, _batch_norm())
    path, placement = place(quantize, [], OP_TYPES, tmp_path, mode="ort")
    assert placement.mode == "ort" and placement.rounds == [] and placement.excluded == []
    assert any(n.name == "bn" for n in onnx.load(str(path)).graph.node)
    _, kept = place(quantize, ["conv2"], OP_TYPES, tmp_path)
    assert "conv2" not in kept.excluded  # the user's own choice is not the placement's


def test_8bit_data_movement_touching_no_kernel_is_isolated():
    """Q -> Reshape on uint8 -> DQ: converts to 8 bits and back for nothing."""
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
        helper.make_node("Reshape", ["xq", "shape"], ["r"], name="reshape"),
        helper.make_node("DequantizeLinear", ["r", "s", "z"], ["y"], name="dq"),
        helper.make_node("QuantizeLinear", ["y", "s", "z"], ["yq"], name="q2"),
        helper.make_node("QLinearConv", ["yq", "s", "z"], ["k"], name="conv"),
        helper.make_node("Reshape", ["k", "shape"], ["r2"], name="reshape2"),
    ]
    graph = helper.make_graph(nodes, "g", [], [])
    types = {t: "tensor(uint8)" for t in ("xq", "r", "yq", "k", "r2")}
    executed = ExecutedGraph(helper.make_model(graph), types)
    kinds = {"reshape": MOVEMENT, "conv": KERNEL, "reshape2": MOVEMENT}
    assert _isolated_movement(executed, kinds) == ["reshape"]  # reshape2 follows a kernel


def _product_reduced() -> onnx.ModelProto:
    """Mul(conv1, convk) -> ReduceSum over channels -> conv2: a dot product written out, as
    SASA's attention products are."""
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    wk = numpy_helper.from_array(np.random.default_rng(2).normal(0, 0.5, (4, 1, 3, 3)), "wk")
    wk = numpy_helper.from_array(numpy_helper.to_array(wk).astype(np.float32), "wk")
    middle = [
        helper.make_node("Conv", ["x", "wk"], ["k"], name="convk", pads=[1] * 4),
        helper.make_node("Mul", ["a", "k"], ["m"], name="product"),
        helper.make_node("ReduceSum", ["m", "axes"], ["r"], name="reduce", keepdims=1),
    ]
    return _model(middle, [axes, wk], "r", 1)


def test_an_elementwise_kernel_between_float_ops_is_kept_out(tmp_path):
    """Its inputs come from float ops (here the two Convs kept in float, as SASA's fixed
    gathers are) and its result goes back to float: quantise, multiply, dequantise."""
    quantize = _setup(tmp_path, _product_reduced())
    floats = ["conv1", "convk"]
    first_path = tmp_path / "first.onnx"
    quantize(floats, first_path)
    graph = executed_graph(first_path)
    kinds = classify(onnx.load(str(first_path)), graph, set(OP_TYPES), set(floats))
    assert kinds["product"] == KERNEL  # ORT fuses it into QLinearMul...
    assert {n.name: n.op_type for n in graph.nodes}["product"] == "QLinearMul"
    path, placement = place(quantize, floats, OP_TYPES, tmp_path)
    assert placement.excluded == ["product"]  # ...between conversions from and to float
    chosen = placement.rounds[-1]
    assert chosen.accepted and chosen.conversions < placement.rounds[0].conversions
    assert {n.name: n.op_type for n in executed_graph(path).nodes}["product"] == "Mul"


def test_an_elementwise_kernel_fed_by_integer_kernels_stays_when_leaving_it_costs_more(
    tmp_path,
):
    """Fed by two QLinearConvs, excluding the Mul would add a DequantizeLinear per input:
    the round is measured and refused."""
    quantize = _setup(tmp_path, _product_reduced())
    _, placement = place(quantize, [], OP_TYPES, tmp_path)
    assert placement.excluded == [] and placement.rounds[-1].excluded == ["product"]
    assert not placement.rounds[-1].accepted


def test_quantize_keeps_the_fixed_gather_convs_in_float(tmp_path):
    """A one-hot depthwise gather (SASA's neighbourhood, role `fixed`) moves pixels: quantize
    keeps it in float, found by its values even without the export's mark."""
    from test_modelfile_roles import one_hot

    from qtool.quantization.quantize import QuantizeOptions, quantize_model

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(one_hot(channels=3), "g"),
        numpy_helper.from_array(rng.standard_normal((3, 27, 1, 1)).astype(np.float32), "w"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "g"], ["n"], name="gather", pads=[1] * 4, group=3),
        helper.make_node("Conv", ["n", "w"], ["c"], name="mix"),
        helper.make_node("GlobalAveragePool", ["c"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["y"], name="flat"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    src, out, data = tmp_path / "g.onnx", tmp_path / "g.int8.onnx", tmp_path / "d.npz"
    onnx.save(model, str(src))
    arrays = {}
    for split, n in (("train", 48), ("val", 24), ("test", 24)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 6, 6, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 3, n)
    np.savez(data, **arrays)
    report = quantize_model(src, out, f"npz:{data}", QuantizeOptions(seed=0))
    quantised = onnx.load(str(out))
    producers = {o: n.op_type for n in quantised.graph.node for o in n.output}
    by_name = {n.name: n for n in quantised.graph.node}
    assert producers.get(by_name["gather"].input[1]) != "DequantizeLinear"  # float weights
    assert producers.get(by_name["mix"].input[1]) == "DequantizeLinear"  # the arithmetic: int8
    assert any("1 fixed (one-hot gather) Conv(s) kept in float" in n for n in report.notes)
