"""compare_providers: every provider scored against the CPU provider on the same samples."""

from __future__ import annotations

import numpy as np
import pytest
from builders import digits_linear_weights, linear_image_model, save

from qtool.data.datasets import load_dataset
from qtool.errors import QtoolError
from qtool.evaluation.providers import compare_providers
from qtool.runtimes.providers import PROVIDERS


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    return save(
        linear_image_model(*digits_linear_weights()), tmp_path_factory.mktemp("p") / "l.onnx"
    )


def test_the_cpu_provider_against_itself_agrees_exactly(digits_model):
    test = load_dataset("digits:test")
    w, b = digits_linear_weights()
    expected = np.mean((test.x.reshape(len(test.x), -1) @ w + b).argmax(axis=1) == test.y)
    for precision in ("fp32", "auto"):  # auto builds a session of its own: same kernels
        (row,) = compare_providers(
            digits_model, [PROVIDERS.get("cpu")], test, precision=precision, max_accuracy_drop=0.5
        )
        assert row.provider == "cpu" and row.precision == precision
        assert row.accuracy == pytest.approx(expected, abs=1 / len(test.y))
        assert row.accuracy == row.cpu_accuracy and row.accuracy_drop_pp == 0.0
        assert row.top1_agreement_with_cpu == 1.0 and row.max_abs_score_diff_vs_cpu == 0.0
        assert row.within_budget is True and row.samples == len(test.y) == 360
        assert row.model == "l.onnx" and row.data == "digits (test)"


def test_a_model_the_reference_cannot_load_names_provider_and_op(digits_model, tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mystery", ["x"], ["y"], domain="custom.qtool")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom.qtool", 1)]
    )
    model.ir_version = 9
    bad = save(model, tmp_path / "bad.onnx")
    with pytest.raises(QtoolError, match="op custom.qtool:Mystery is not supported"):
        compare_providers(bad, [PROVIDERS.get("cpu")], load_dataset("digits:test"))


def test_unlabelled_data_is_refused(digits_model):
    test = load_dataset("digits:test")
    unlabelled = type(test)(test.spec, test.split, test.x, None, test.class_names, test.kind)
    with pytest.raises(QtoolError, match="has no labels") as info:
        compare_providers(digits_model, [PROVIDERS.get("cpu")], unlabelled)
    assert info.value.param == "data"
