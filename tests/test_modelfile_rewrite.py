"""modelfile.rewrite: varint and unpacked tensors become raw_data with the same values; every
other byte of the model stays as it was, and the old tensor bodies put back give the original
file byte for byte. Values are checked with numpy_helper and by running ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from qtool.errors import QtoolError
from qtool.modelfile.locate import graph_nodes, locate_initializers, tensor_bodies
from qtool.modelfile.rewrite import replace_tensors, rewrite_tensors, to_flippable

VARINT_TENSORS = {
    "q_int8": (TensorProto.INT8, np.array([-128, -5, 0, 9, 127], np.int8)),
    "q_int32": (TensorProto.INT32, np.array([-(2**31), -1, 0, 2**31 - 1, 12345], np.int32)),
    "q_int64": (TensorProto.INT64, np.array([-(2**63), -1, 0, 2**62, 77], np.int64)),
    "q_uint64": (TensorProto.UINT64, np.array([0, 1, 2**63, 2**64 - 1, 5], np.uint64)),
    "q_half": (TensorProto.FLOAT16, np.array([1.5, -2.0, 0.0, 65504, 1e-3], np.float16)),
}
RAW = np.linspace(-1, 1, 6, dtype=np.float32)
UNPACKED = np.array([0.25, -7.5, 3.0], np.float32)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _append_field(message: bytes, number: int, payload: bytes) -> bytes:
    """`message` with one more length-delimited field at its end (protobuf allows any order)."""
    return message + _varint(number << 3 | 2) + _varint(len(payload)) + payload


def varint_model(with_graph: bool = False):
    """Identity per tensor: varint lists of five dtypes, a raw_data tensor that must not
    change, and float_data written unpacked (one fixed32 field per value), which protobuf
    itself never writes for ONNX, so its TensorProto is appended to the graph by hand; a
    metadata entry follows the graph. `with_graph`: also return the graph's bytes."""
    inits = [
        helper.make_tensor(name, dtype, [5], values.tolist())
        for name, (dtype, values) in VARINT_TENSORS.items()
    ] + [numpy_helper.from_array(RAW, "raw")]
    names = [*VARINT_TENSORS, "raw", "unpacked"]
    outputs = [
        helper.make_tensor_value_info(f"out_{n}", d, [5]) for n, (d, _) in VARINT_TENSORS.items()
    ] + [
        helper.make_tensor_value_info("out_raw", TensorProto.FLOAT, [6]),
        helper.make_tensor_value_info("out_unpacked", TensorProto.FLOAT, [3]),
    ]
    graph = helper.make_graph(
        [helper.make_node("Identity", [n], [f"out_{n}"]) for n in names],
        "varints",
        [],
        outputs,
        inits,
    )
    unpacked = b"".join(b"\x25" + v.tobytes() for v in UNPACKED)  # field 4, wire type 5
    unpacked += b"\x08\x03" + b"\x10\x01" + b"\x42\x08unpacked"  # dims, data_type, name
    graph_bytes = _append_field(graph.SerializeToString(), 5, unpacked)
    model = helper.make_model(onnx.GraphProto(), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    model.ClearField("graph")
    data = _append_field(model.SerializeToString(), 7, graph_bytes)
    data = _append_field(data, 14, b"\x0a\x04note\x12\x05after")  # metadata_props
    assert onnx.load_from_string(data).metadata_props[0].value == "after"
    onnx.checker.check_model(onnx.load_from_string(data))
    return (data, graph_bytes) if with_graph else data


def _outputs(data: bytes) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return {o.name: v for o, v in zip(session.get_outputs(), session.run(None, {}), strict=True)}


def test_conversion_keeps_every_value():
    data = varint_model()
    assert onnx.load_from_string(data).graph.initializer[-1].float_data == UNPACKED.tolist()
    new, converted = to_flippable(data)
    assert converted == [*VARINT_TENSORS, "unpacked"]
    before, after = onnx.load_from_string(data), onnx.load_from_string(new)
    for name, (_, values) in VARINT_TENSORS.items():
        written = next(t for t in before.graph.initializer if t.name == name)
        assert written.HasField("raw_data") is False
        np.testing.assert_array_equal(numpy_helper.to_array(written), values)
    for a, b in zip(before.graph.initializer, after.graph.initializer, strict=True):
        assert b.HasField("raw_data") and not b.int32_data and not b.float_data
        x, y = numpy_helper.to_array(a), numpy_helper.to_array(b)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    for name, got in _outputs(new).items():
        np.testing.assert_array_equal(got, _outputs(data)[name])
    locs = {loc.name: loc for loc in locate_initializers(new)}
    assert {loc.encoding for loc in locs.values()} == {"raw_data"}
    assert all(loc.flippable for loc in locs.values())
    q = locs["q_int64"]
    np.testing.assert_array_equal(
        np.frombuffer(new[q.offset : q.offset + q.length], "<i8"), VARINT_TENSORS["q_int64"][1]
    )


def test_conversion_leaves_other_bytes_identical_and_is_undone_exactly():
    data, graph = varint_model(with_graph=True)
    new, converted = to_flippable(data)
    old_bodies, new_bodies = tensor_bodies(data), tensor_bodies(new)
    assert new_bodies[("main", "raw")] == old_bodies[("main", "raw")]
    assert graph_nodes(new) == graph_nodes(data)
    start = data.index(graph)
    head = start - len(_varint(len(graph))) - 1  # the graph field's tag and length prefix
    tail = data[start + len(graph) :]
    assert new[:head] == data[:head] and new.endswith(tail) and len(tail) > 0
    back = replace_tensors(new, {k: v for k, v in old_bodies.items() if k[1] in converted})
    assert back == data


def test_only_the_selected_tensors_are_converted():
    data = varint_model()
    new, converted = to_flippable(data, only={("main", "q_int8"), ("main", "raw")})
    assert converted == ["q_int8"]
    encodings = {loc.name: loc.encoding for loc in locate_initializers(new)}
    assert encodings["q_int8"] == "raw_data" and encodings["q_int32"] == "int32_data"
    assert to_flippable(data, only=set()) == (data, [])


def test_subgraph_tensors_are_converted_under_their_graph_path():
    then_g = helper.make_graph(
        [helper.make_node("Identity", ["k"], ["y_then"])],
        "then",
        [],
        [helper.make_tensor_value_info("y_then", TensorProto.INT64, [3])],
        [helper.make_tensor("k", TensorProto.INT64, [3], [-3, 0, 3])],
    )
    else_g = helper.make_graph(
        [helper.make_node("Identity", ["k"], ["y_else"])],
        "else",
        [],
        [helper.make_tensor_value_info("y_else", TensorProto.INT64, [3])],
        [helper.make_tensor("k", TensorProto.INT64, [3], [7, 8, 9])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
        "if",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    data = model.SerializeToString()
    new, converted = to_flippable(data, only={("main/If_0/else_branch", "k")})
    assert converted == ["k"]
    encodings = {(loc.graph, loc.encoding) for loc in locate_initializers(new)}
    assert encodings == {("main/If_0/then_branch", "int64_data"),
                         ("main/If_0/else_branch", "raw_data")}  # fmt: skip
    session = ort.InferenceSession(new, providers=["CPUExecutionProvider"])
    assert session.run(None, {"c": np.array(False)})[0].tolist() == [7, 8, 9]
    assert session.run(None, {"c": np.array(True)})[0].tolist() == [-3, 0, 3]


def test_nothing_to_convert_returns_the_same_bytes():
    data = numpy_helper.from_array(RAW, "raw")
    graph = helper.make_graph([], "g", [], [], [data])
    model = helper.make_model(graph).SerializeToString()
    assert to_flippable(model) == (model, [])
    assert rewrite_tensors(model, lambda buf, s, e, g: None) == model


def test_malformed_protobuf_is_a_qtool_error():
    data = varint_model()
    with pytest.raises(QtoolError, match="not a well-formed ONNX protobuf"):
        to_flippable(data[: len(data) - 7])
