"""evaluate_session: a data set through a real session, NaN rows counted, labels required."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from qtool.data.dataset import Dataset
from qtool.errors import QtoolError
from qtool.evaluation.evaluate import evaluate_session, model_io, predicted_labels


def _sqrt_model() -> ort.InferenceSession:
    """scores = sqrt(x) @ I: a negative feature makes that row's scores NaN."""
    graph = helper.make_graph(
        [
            helper.make_node("Sqrt", ["x"], ["r"]),
            helper.make_node("MatMul", ["r", "w"], ["scores"]),
        ],
        "sqrt",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(np.eye(2, dtype=np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_scores_nan_rows_and_positive_class_from_the_data_set():
    session = _sqrt_model()
    x = np.array([[4, 1], [1, 9], [-1, 1], [9, 0], [0, 1]], np.float32)
    y = np.array([0, 1, 1, 1, 1])
    data = Dataset("t", "test", x, y, ["sick", "well"], "tabular", {"positive_class": 0})
    result = evaluate_session(session, model_io(session), data, batch=2)
    # predictions: 0, 1, NaN row -> never wins -> argmax of all -inf is 0, 0, 1
    assert result.nonfinite_outputs == 1
    assert result.accuracy == pytest.approx(3 / 5)
    assert result.positive_class == "sick" and result.sensitivity == 1.0
    assert result.specificity == pytest.approx(2 / 4)
    assert (result.data, result.split, result.output) == ("t", "test", "scores")


def test_predicted_labels_never_pick_nan():
    scores = np.array([[np.nan, 1.0, 0.5], [0.1, np.nan, 0.2]])
    assert predicted_labels(scores).tolist() == [1, 2]


def test_unlabelled_data_cannot_be_scored():
    session = _sqrt_model()
    data = Dataset("u", "test", np.ones((2, 2), np.float32), None, [], "tabular")
    with pytest.raises(QtoolError, match="no labels"):
        evaluate_session(session, model_io(session), data)
