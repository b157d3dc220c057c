"""serving.protocol: Open Inference Protocol requests are checked before anything runs; each
problem is one RequestError with its HTTP status; responses follow the v2 layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qtool.serving.protocol import (
    RequestError,
    TensorSpec,
    infer_response,
    model_metadata,
    parse_infer_request,
    tensor_json,
)

INPUTS = [TensorSpec("x", "FP32", [-1, 1, 2, 2])]
OUTPUTS = [TensorSpec("logits", "FP32", [-1, 3]), TensorSpec("probs", "FP32", [-1, 3])]


def body(**fields) -> bytes:
    request = {"inputs": [{"name": "x", "shape": [1, 1, 2, 2], "datatype": "FP32"}]}
    request["inputs"][0]["data"] = [0.0, 0.25, 0.5, 1.0]
    for key, value in fields.items():
        if key in ("name", "shape", "datatype", "data", "parameters"):
            request["inputs"][0][key] = value
        else:
            request[key] = value
    return json.dumps(request).encode()


def test_flat_and_nested_data_give_the_same_feed():
    flat = parse_infer_request(body(), INPUTS, OUTPUTS, max_batch=4)
    nested = parse_infer_request(body(data=[[[[0.0, 0.25], [0.5, 1.0]]]]), INPUTS, OUTPUTS, 4)
    assert flat.feeds["x"].dtype == np.float32 and flat.feeds["x"].shape == (1, 1, 2, 2)
    assert np.array_equal(flat.feeds["x"], nested.feeds["x"])
    assert flat.outputs is None and flat.id is None
    picked = parse_infer_request(body(id="42", outputs=[{"name": "probs"}]), INPUTS, OUTPUTS, 4)
    assert picked.outputs == ["probs"] and picked.id == "42"


@pytest.mark.parametrize(
    ("payload", "status", "text"),
    [
        (b"{not json", 400, "not JSON"),
        (b"[]", 400, '"inputs" list'),
        (body(name="y"), 400, "no input 'y'; its inputs are 'x'"),
        (body(datatype="FP64"), 400, "has datatype FP64; the model takes FP32"),
        (body(datatype="STRING"), 400, "is not one of"),
        (body(shape=[1, 1, 2, 3]), 400, "the model takes [-1, 1, 2, 2]"),
        (body(shape=[1, 4]), 400, "has shape [1, 4]"),
        (body(shape=[5, 1, 2, 2], data=[0.0] * 20), 413, "batch of 5; this server's limit is 4"),
        (body(data=[0.0] * 3), 400, "has 3 values; shape [1, 1, 2, 2] needs 4"),
        (body(data=["a", "b", "c", "d"]), 400, "data must be numbers"),
        (body(data=[[0.0], [1.0, 2.0]]), 400, "data must be numbers"),
        (body(outputs=[{"name": "nope"}]), 400, "no output 'nope'"),
        (body(parameters={"binary_data_size": 16}), 400, "binary tensor data extension"),
        (body(id=7), 400, '"id" must be a string'),
        (json.dumps({"inputs": []}).encode(), 400, "lacks input(s) 'x'"),
    ],
)
def test_bad_requests_are_one_line_with_a_status(payload, status, text):
    with pytest.raises(RequestError) as exc:
        parse_infer_request(payload, INPUTS, OUTPUTS, max_batch=4)
    assert exc.value.status == status and text in str(exc.value)
    assert "\n" not in str(exc.value)


def test_metadata_and_response_layout():
    meta = model_metadata("cnn", INPUTS, OUTPUTS)
    assert meta["platform"] == "onnx_onnxv1" and meta["inputs"][0]["shape"] == [-1, 1, 2, 2]
    out = infer_response("cnn", "7", [("probs", np.array([[0.25, 0.75, np.nan]], np.float32))])
    assert out["id"] == "7" and out["model_name"] == "cnn"
    assert out["outputs"][0] == {
        "name": "probs",
        "datatype": "FP32",
        "shape": [1, 3],
        "data": [0.25, 0.75, None],  # JSON has no NaN
    }
    assert tensor_json("l", np.array([1, 2], np.int64))["datatype"] == "INT64"
    assert "id" not in infer_response("cnn", None, [])
