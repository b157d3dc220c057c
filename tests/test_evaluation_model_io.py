"""Choosing a session's sample input and score output, preparing samples, batched runs."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from builders import conv_model, linear_image_model
from onnx import TensorProto, helper, numpy_helper

from qtool.errors import QtoolError
from qtool.evaluation.model_io import model_io, run_scores


def _session(model) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _two_input_model():
    """An int64 `ids` input first, then the float image; int64 label and float scores out."""
    w = np.random.default_rng(0).random((64, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["scores"]),
            helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0),
            helper.make_node("Identity", ["ids"], ["ids_out"]),
        ],
        "two",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8]),
        ],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("ids_out", TensorProto.INT64, ["N"]),
        ],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def test_first_float_input_and_rank_2_float_output_are_chosen():
    io = model_io(_session(_two_input_model()))
    assert io.input_name == "x" and io.output_name == "scores"
    assert io.input_shape == ["N", 1, 8, 8] and io.input_dtype is np.float32
    assert io.fixed_batch is None


def test_named_tensors_and_errors_that_name_the_parameter():
    session = _session(_two_input_model())
    assert model_io(session, output_name="scores").output_name == "scores"
    cases = [
        ({"input_name": "nope"}, "input_name", "has no input 'nope'; its inputs are: ids, x"),
        ({"input_name": "ids"}, "input_name", "feeds float tensors only"),
        ({"output_name": "nope"}, "output_name", "has no output 'nope'"),
    ]
    for kwargs, param, message in cases:
        with pytest.raises(QtoolError, match=message) as info:
            model_io(session, **kwargs)
        assert info.value.param == param


def test_metadata_sets_normalisation_and_class_names():
    w = np.eye(64, 10, dtype=np.float32)
    session = _session(linear_image_model(w, np.zeros(10, np.float32)))
    meta = {"normalization": {"mean": [0.5], "std": [0.25]}, "class_names": list("abcdefghij")}
    io = model_io(session, meta)
    assert io.class_names == list("abcdefghij")
    prepared = io.prepare(np.ones((2, 1, 4, 4), np.float32))  # resized to 8x8, then normalised
    assert prepared.shape == (2, 1, 8, 8) and np.allclose(prepared, 2.0)


def test_static_batch_is_padded_and_trimmed():
    w = np.random.default_rng(1).random((64, 10)).astype(np.float32)
    b = np.zeros(10, np.float32)
    static = _session(linear_image_model(w, b, input_shape=(4, 1, 8, 8)))
    dynamic = _session(linear_image_model(w, b))
    io_s, io_d = model_io(static), model_io(dynamic)
    assert io_s.fixed_batch == 4
    x = np.random.default_rng(2).random((7, 1, 8, 8), dtype=np.float32)
    expected = x.reshape(7, 64) @ w
    assert np.allclose(run_scores(static, io_s, x), expected, atol=1e-5)
    assert np.allclose(run_scores(dynamic, io_d, x, batch=3), expected, atol=1e-5)
    with pytest.raises(QtoolError, match="empty"):
        run_scores(dynamic, io_d, x[:0])


def test_a_model_without_score_output_says_what_to_do():
    model = conv_model()
    graph = model.graph
    graph.node.append(helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]))
    with pytest.raises(QtoolError, match="no output holds class scores") as info:
        model_io(_session(model))
    assert info.value.param == "output_name"
