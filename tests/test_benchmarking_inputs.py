"""Inputs prepared before timing: shapes, dtypes, shared arrays, data feeds, clear errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from builders import conv_model
from onnx import TensorProto, helper

from qtool.benchmarking.inputs import (
    BenchModel,
    data_batch,
    model_names,
    prepare_sessions,
    random_array,
    resolve_shape,
)
from qtool.data.datasets import load_dataset
from qtool.errors import QtoolError
from qtool.runtimes.session import make_session


def _models(*protos: onnx.ModelProto) -> list[BenchModel]:
    return [
        BenchModel(f"m{i}.onnx", f"m{i}.onnx", make_session(p, threads=1), {})
        for i, p in enumerate(protos)
    ]


def test_model_names_are_file_names_made_unique():
    assert model_names(["a/m.onnx", "b/m.onnx", "m.int8.onnx", "c/m.onnx"]) == [
        "m.onnx",
        "m.onnx#2",
        "m.int8.onnx",
        "m.onnx#3",
    ]


def test_shapes_take_the_batch_and_declared_dimensions():
    assert resolve_shape("m", "x", ["N", 1, 8, 8], 4, None) == [4, 1, 8, 8]
    assert resolve_shape("m", "x", ["N", "T"], 2, [1, 16]) == [2, 16]
    assert resolve_shape("m", "x", [3, 5], 3, None) == [3, 5]
    with pytest.raises(QtoolError, match="fixed batch of 3") as info:
        resolve_shape("m", "x", [3, 5], 4, None)
    assert info.value.param == "batches" and "--" not in str(info.value)
    with pytest.raises(QtoolError, match="symbolic dimension 'T'"):
        resolve_shape("m", "x", ["N", "T"], 2, None)


def test_random_arrays_and_data_batches():
    rng = np.random.default_rng(0)
    floats = random_array(rng, np.float32, [2, 3])
    assert floats.dtype == np.float32 and 0 <= floats.min() and floats.max() < 1
    ints = random_array(rng, np.int64, [50])
    assert ints.dtype == np.int64 and set(ints.tolist()) <= {0, 1}
    assert random_array(rng, np.bool_, [4]).dtype == np.bool_
    x = np.arange(3)[:, None]
    assert data_batch(x, 7)[:, 0].tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_models_of_one_configuration_share_their_random_inputs():
    first = prepare_sessions(_models(conv_model(0), conv_model(1)), 4, seed=3)
    assert first[0].feeds["x"] is first[1].feeds["x"]  # same values for every model
    assert first[0].feeds["x"].shape == (4, 1, 8, 8) and first[0].feeds["x"].flags.c_contiguous
    again = prepare_sessions(_models(conv_model(0)), 4, seed=3)
    np.testing.assert_array_equal(again[0].feeds["x"], first[0].feeds["x"])
    other = prepare_sessions(_models(conv_model(0)), 4, seed=4)
    assert not np.array_equal(other[0].feeds["x"], first[0].feeds["x"])
    assert first[0].output_names == ["logits"] and "random (seed 3)" in first[0].inputs
    out = first[0].contender(4)()  # the timed call is the plain session.run
    assert out[0].shape == (4, 10)


def test_data_samples_feed_the_sample_input():
    digits = load_dataset("digits:val")
    prepared = prepare_sessions(_models(conv_model(0)), 5, seed=0, dataset=digits)[0]
    assert prepared.feeds["x"].shape == (5, 1, 8, 8)
    assert "data digits" in prepared.inputs and "first 5 samples" in prepared.inputs
    assert not np.array_equal(prepared.feeds["x"][0], prepared.feeds["x"][1])


def test_a_model_that_fails_on_the_inputs_is_bad_input():
    graph = helper.make_graph(  # Reshape to 3 columns fails unless the input size fits
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    with pytest.raises(QtoolError, match="ONNX Runtime failed running m0.onnx") as info:
        prepare_sessions(_models(model), 1, seed=0)
    assert info.value.param == "data"
