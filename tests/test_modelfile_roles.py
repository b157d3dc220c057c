"""Graph roles, and the `fixed` role of one-hot gather Convs: marked by value, read from nodes."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

from qtool.faults.storage.selection import Selection
from qtool.faults.storage.targets import select_targets
from qtool.modelfile.roles import (
    FIXED,
    fixed_conv_names,
    initializer_roles,
    is_fixed,
    is_selection,
    mark_fixed_convs,
)
from qtool.modelfile.summary import count_fixed_flops, count_flops, summarize


def one_hot(channels: int = 2, k: int = 3) -> np.ndarray:
    w = np.zeros((channels * k * k, 1, k, k), np.float32)
    for c in range(channels):
        for n in range(k * k):
            w[c * k * k + n, 0, n // k, n % k] = 1
    return w


def gather_model(gather: np.ndarray) -> onnx.ModelProto:
    """x (N,2,6,6) -> depthwise gather Conv (2 -> 18 channels, bias) -> 1x1 Conv -> 3."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "g", "gb"], ["n"], pads=[1, 1, 1, 1], group=2),
        helper.make_node("Conv", ["n", "w"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(gather, "g"),
        numpy_helper.from_array(rng.standard_normal(18).astype(np.float32), "gb"),
        numpy_helper.from_array(rng.standard_normal((3, 18, 1, 1)).astype(np.float32), "w"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 6, 6])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_selection_means_one_weight_one_per_output_channel():
    assert is_selection(one_hot())
    almost = one_hot()
    almost[0, 0, 0, 0] = 0.5
    assert not is_selection(almost)
    two = one_hot()
    two[0, 0, 1, 1] = 1
    assert not is_selection(two)
    assert not is_selection(np.random.default_rng(0).standard_normal((4, 1, 3, 3)))


def test_marked_gather_is_fixed_not_a_parameter_flop_or_flip_target(tmp_path):
    model = gather_model(one_hot())
    assert initializer_roles(model.graph)["g"] == "weight"  # unmarked: an ordinary weight
    assert mark_fixed_convs(model) == [model.graph.node[0].name]
    assert mark_fixed_convs(model) == []  # marking twice adds nothing
    assert is_fixed(model.graph.node[0]) and not is_fixed(model.graph.node[1])
    roles = initializer_roles(model.graph)
    assert roles == {"g": FIXED, "gb": "bias", "w": "weight"}
    path = tmp_path / "g.onnx"
    onnx.save(model, path)
    summary = summarize(path)
    assert summary.parameters == 18 + 3 * 18  # bias and 1x1 weights, not the 162 fixed ones
    assert count_flops(model) == 2 * 3 * 36 * 18  # the 1x1 Conv only
    assert count_fixed_flops(model) == 2 * 18 * 36 * 9
    data = path.read_bytes()
    assert {t.loc.name for t in select_targets(data, Selection(targets=["weights"]))} == {"w"}
    assert "g" in {t.loc.name for t in select_targets(data, Selection(targets=["all"]))}


def test_an_unmarked_weight_is_never_fixed():
    weights = np.random.default_rng(1).standard_normal((18, 1, 3, 3)).astype(np.float32)
    model = gather_model(weights)
    assert mark_fixed_convs(model) == []
    assert initializer_roles(model.graph)["g"] == "weight"


def test_quantised_gather_is_found_behind_its_dequantize(tmp_path):
    src, out = tmp_path / "g.onnx", tmp_path / "g.int8.onnx"
    onnx.save(gather_model(one_hot()), src)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.items = iter([{"x": rng.random((4, 2, 6, 6), dtype=np.float32)}])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    model = onnx.load(out)
    for node in model.graph.node:  # as after ORT's graph optimisation: node metadata gone
        del node.metadata_props[:]
    gather = next(n for n in model.graph.node if n.op_type == "Conv" and "g" in n.input[1])
    assert mark_fixed_convs(model) == [gather.name]
    roles = initializer_roles(model.graph)
    fixed = [name for name, role in roles.items() if role == FIXED]
    assert fixed == ["g_quantized"]
    assert (
        numpy_helper.to_array(
            next(t for t in model.graph.initializer if t.name == "g_quantized")
        ).max()
        == 127
    )  # 1 is int8-exact: scale 1/127


def test_weights_in_external_data_not_loaded_are_not_read(tmp_path):
    """quantize looks for gathers in a model read without its external data (a > 2 GB model
    keeps its weights on disk): those Convs are left alone, not decoded from missing bytes."""
    path = tmp_path / "g.onnx"
    onnx.save(gather_model(one_hot()), str(path), save_as_external_data=True, size_threshold=0)
    assert fixed_conv_names(onnx.load(str(path), load_external_data=False)) == []
    assert len(fixed_conv_names(onnx.load(str(path)))) == 1
