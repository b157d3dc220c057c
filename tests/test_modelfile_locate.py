"""modelfile.locate: every initializer's byte span, checked against onnx's own decoding.

The expected values come from `onnx.numpy_helper` (or protobuf itself for varint lists), never
from qtool; the models are real ONNX files, and the ones with subgraphs run in ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from builders import conv_model
from onnx import TensorProto, helper, numpy_helper

from qtool.errors import QtoolError
from qtool.modelfile.locate import (
    external_files,
    graph_nodes,
    locate_initializers,
    tensor_bodies,
)
from qtool.modelfile.save import save_model

RNG = np.random.default_rng(0)
W_RAW = RNG.standard_normal((4, 3)).astype(np.float32)
B_PACKED = RNG.standard_normal(3).astype(np.float32)
D_PACKED = RNG.standard_normal(3)
Q_VARINT = np.array([-128, -1, 0, 7, 127], dtype=np.int8)


def _model(graph: onnx.GraphProto, opset: int = 17) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def mixed_encodings() -> onnx.ModelProto:
    """One tensor per stored layout: raw_data, packed float_data and double_data, varints."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w_raw"], ["h"]),
            helper.make_node("Add", ["h", "b_packed"], ["y"]),
            helper.make_node("Identity", ["d_packed"], ["d"]),
            helper.make_node("Identity", ["q_varint"], ["q"]),
        ],
        "mixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("d", TensorProto.DOUBLE, [3]),
            helper.make_tensor_value_info("q", TensorProto.INT8, [5]),
        ],
        [
            numpy_helper.from_array(W_RAW, "w_raw"),
            helper.make_tensor("b_packed", TensorProto.FLOAT, [3], B_PACKED.tolist()),
            helper.make_tensor("d_packed", TensorProto.DOUBLE, [3], D_PACKED.tolist()),
            helper.make_tensor("q_varint", TensorProto.INT8, [5], Q_VARINT.tolist()),
        ],
    )
    return _model(graph)


def loop_and_if() -> onnx.ModelProto:
    """Loop (unnamed, 3 iterations) adding a body initializer; If choosing between two
    branch initializers. y = x + 3 * w_body, z = w_then if sum(x) > 0 else w_else."""
    w_body = np.arange(4, dtype=np.float32)
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["v_in", "w_body"], ["v_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [4]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [4]),
        ],
        [numpy_helper.from_array(w_body, "w_body")],
    )

    def branch(name: str, value: float) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node("Identity", [f"w_{name}"], [f"z_{name}"])],
            name,
            [],
            [helper.make_tensor_value_info(f"z_{name}", TensorProto.FLOAT, [2])],
            [numpy_helper.from_array(np.full(2, value, np.float32), f"w_{name}")],
        )

    graph = helper.make_graph(
        [
            helper.make_node("Loop", ["trips", "true", "x"], ["y"], body=body),
            helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
            helper.make_node("Greater", ["s", "zero"], ["c"]),
            helper.make_node(
                "If",
                ["c"],
                ["z"],
                name="choose",
                then_branch=branch("then", 1.5),
                else_branch=branch("else", -2.5),
            ),
        ],
        "loop_and_if",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [4]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [2]),
        ],
        [
            numpy_helper.from_array(np.array(3, np.int64), "trips"),
            numpy_helper.from_array(np.array(True), "true"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        ],
    )
    return _model(graph)


def _varint_values(payload: bytes, field: int, dtype: int) -> list[int]:
    """Decode a span of varint-list bytes with protobuf itself, as that typed field."""
    tensor = TensorProto.FromString(
        bytes([field << 3 | 2]) + bytes([len(payload)]) + payload + bytes([2 << 3, dtype])
    )
    return list(tensor.int32_data)


def _check_against_numpy_helper(data: bytes, graph: onnx.GraphProto, path: str, locs) -> int:
    """Every in-place tensor of `graph` (and its subgraphs) read from its span equals
    numpy_helper's decoding; returns how many were checked."""
    checked = 0
    for t in graph.initializer:
        loc = locs.pop((path, t.name))
        assert (loc.dims, loc.data_type) == (tuple(t.dims), t.data_type)
        if loc.flippable:
            expected = numpy_helper.to_array(t)
            span = data[loc.offset : loc.offset + loc.length]
            got = np.frombuffer(span, expected.dtype.newbyteorder("<")).reshape(expected.shape)
            np.testing.assert_array_equal(got, expected)
            checked += 1
    for i, node in enumerate(graph.node):
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                label = node.name or f"{node.op_type}_{i}"
                sub = f"{path}/{label}/{attr.name}"
                checked += _check_against_numpy_helper(data, attr.g, sub, locs)
    return checked


def test_each_stored_layout_is_located_exactly():
    model = mixed_encodings()
    data = model.SerializeToString()
    locs = {loc.name: loc for loc in locate_initializers(data)}
    assert {n: loc.encoding for n, loc in locs.items()} == {
        "w_raw": "raw_data",
        "b_packed": "float_data",
        "d_packed": "double_data",
        "q_varint": "int32_data",
    }
    assert [locs[n].itemsize for n in ("w_raw", "d_packed", "q_varint")] == [4, 8, 1]
    assert not locs["q_varint"].flippable and locs["b_packed"].flippable
    assert locs["w_raw"].length == W_RAW.nbytes and locs["w_raw"].numel == 12
    by_key = {(loc.graph, loc.name): loc for loc in locs.values()}
    assert _check_against_numpy_helper(data, model.graph, "main", by_key) == 3 and not by_key
    q = locs["q_varint"]
    span = data[q.offset : q.offset + q.length]
    assert _varint_values(span, 5, TensorProto.INT8) == Q_VARINT.tolist()


def test_subgraphs_of_loop_and_if_are_walked_with_their_paths():
    model = loop_and_if()
    data = model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.array([1.0, -2.0, 3.0, 0.5], np.float32)
    y, z = session.run(None, {"x": x})
    np.testing.assert_array_equal(y, x + 3 * np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(z, np.full(2, 1.5, np.float32))
    locs = locate_initializers(data)
    paths = {(loc.graph, loc.name) for loc in locs}
    assert paths == {
        ("main", "trips"),
        ("main", "true"),
        ("main", "zero"),
        ("main/Loop_0/body", "w_body"),
        ("main/choose/then_branch", "w_then"),
        ("main/choose/else_branch", "w_else"),
    }
    by_key = {(loc.graph, loc.name): loc for loc in locs}
    assert _check_against_numpy_helper(data, model.graph, "main", by_key) == 6


def test_graph_nodes_and_tensor_bodies_are_the_serialized_pieces():
    model = loop_and_if()
    data = model.SerializeToString()
    graphs = {path: onnx.GraphProto.FromString(body) for path, body in graph_nodes(data).items()}
    assert set(graphs) == {"main", "main/Loop_0/body", "main/choose/then_branch",
                           "main/choose/else_branch"}  # fmt: skip
    assert [n.op_type for n in graphs["main"].node] == ["Loop", "ReduceSum", "Greater", "If"]
    assert graphs["main"].node[0] == model.graph.node[0] and graphs["main"].name == "loop_and_if"
    assert all(len(g.initializer) == 0 for g in graphs.values())
    bodies = tensor_bodies(data)
    assert bodies[("main", "zero")] == model.graph.initializer[2].SerializeToString()
    body_graph = model.graph.node[0].attribute[0].g
    assert bodies[("main/Loop_0/body", "w_body")] == body_graph.initializer[0].SerializeToString()
    assert len(bodies) == 6


def test_external_data_spans_point_into_the_data_file(tmp_path):
    path = save_model(conv_model(), tmp_path / "conv.onnx", external=True)
    data = path.read_bytes()
    locs = {loc.name: loc for loc in locate_initializers(data, tmp_path)}
    assert locs["wf"].file == "conv.onnx.data" and locs["wf"].encoding == "external"
    assert locs["wc"].file is None  # under save_model's 1 KiB threshold: stays inline
    assert external_files(list(locs.values())) == ["conv.onnx.data"]
    model = onnx.load(str(path))  # loads the external data: numpy_helper's reference
    blob = (tmp_path / "conv.onnx.data").read_bytes()
    for t in model.graph.initializer:
        loc = locs[t.name]
        source = blob if loc.file else data
        got = np.frombuffer(source[loc.offset : loc.offset + loc.length], "<f4")
        np.testing.assert_array_equal(got, numpy_helper.to_array(t).ravel())


def test_external_entry_without_length_uses_the_tensor_size(tmp_path):
    path = save_model(conv_model(), tmp_path / "conv.onnx", external=True)
    model = onnx.load(str(path), load_external_data=False)
    wf = next(t for t in model.graph.initializer if t.name == "wf")
    kept = [e for e in wf.external_data if e.key != "length"]
    del wf.external_data[:]
    wf.external_data.extend(kept)
    (loc,) = [x for x in locate_initializers(model.SerializeToString()) if x.name == "wf"]
    assert loc.length == 256 * 10 * 4 and loc.offset == int(
        next(e.value for e in kept if e.key == "offset")
    )


def test_sparse_values_and_training_graphs_are_included():
    values = numpy_helper.from_array(np.array([2.0, -3.0], np.float32), "sp_values")
    indices = numpy_helper.from_array(np.array([1, 4], np.int64), "sp_indices")
    sparse = helper.make_sparse_tensor(values, indices, [6])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["sp_values"], ["y"])],
        "sparse",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [6])],
        sparse_initializer=[sparse],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    init_graph = helper.make_graph(
        [], "init", [], [], [numpy_helper.from_array(np.ones(3, np.float32), "t_init")]
    )
    model.training_info.add().initialization.CopyFrom(init_graph)
    data = model.SerializeToString()
    locs = {(loc.graph, loc.name): loc for loc in locate_initializers(data)}
    assert set(locs) == {("main", "sp_values"), ("training_info[0]/initialization", "t_init")}
    sp = locs[("main", "sp_values")]
    got = np.frombuffer(data[sp.offset : sp.offset + sp.length], "<f4")
    np.testing.assert_array_equal(got, [2.0, -3.0])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda data: data[: len(data) // 2], "runs past its message"),
        (lambda data: b"\xff" * 16, "not a well-formed ONNX protobuf"),
        (lambda data: numpy_helper.from_array(W_RAW).SerializeToString(), "no graph field"),
    ],
)
def test_malformed_protobuf_is_a_qtool_error(make, message):
    bad = make(mixed_encodings().SerializeToString())
    for call in (locate_initializers, graph_nodes, tensor_bodies):
        with pytest.raises(QtoolError, match=message):
            call(bad)
