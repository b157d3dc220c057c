"""`qtool eval` on real models: numbers checked against numpy, third-party output layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from builders import digits_linear_weights, fit_linear, linear_image_model, save
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from qtool.cli import main
from qtool.data.datasets import load_dataset
from qtool.modelfile.load import sha256_file
from qtool.modelfile.metadata import set_metadata


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def digits_weights():
    return digits_linear_weights()


def test_eval_matches_numpy(tmp_path, digits_weights):
    w, b = digits_weights
    path = save(linear_image_model(w, b), tmp_path / "lin.onnx")
    before = sha256_file(path)
    result = run("eval", path, "--data", "digits", "--json", tmp_path / "e.json", "--batch", 7)
    assert result.exit_code == 0, result.output
    test = load_dataset("digits:test")
    pred = np.argmax(test.x.reshape(len(test.x), -1) @ w + b, axis=1)
    payload = json.loads((tmp_path / "e.json").read_text())
    assert payload["accuracy"] == pytest.approx(np.mean(pred == test.y))
    assert payload["samples"] == 360
    confusion = np.zeros((10, 10), int)
    np.add.at(confusion, (test.y, pred), 1)
    assert payload["confusion"] == confusion.tolist()
    recall_3 = confusion[3, 3] / confusion[3].sum()
    assert payload["per_class"][3]["recall"] == pytest.approx(recall_3)
    assert sha256_file(path) == before


def test_static_batch_model_and_metadata_normalisation(tmp_path, digits_weights):
    w, b = digits_weights
    # The model expects inputs standardised with mean 0.5 / std 0.25; fold that into metadata.
    w2, b2 = w * 0.25, b + 0.5 * w.sum(axis=0)
    model = linear_image_model(w2, b2, input_shape=(1, 1, 8, 8), softmax=True)
    set_metadata(model, {"qtool.normalization": {"mean": [0.5], "std": [0.25]}})
    path = save(model, tmp_path / "static.onnx")
    result = run("eval", path, "--data", "digits", "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    test = load_dataset("digits:test")
    expected = np.mean(np.argmax(test.x.reshape(360, -1) @ w + b, axis=1) == test.y)
    assert json.loads((tmp_path / "e.json").read_text())["accuracy"] == pytest.approx(expected)


def _sklearn_like_model(w, b):
    """The shape skl2onnx gives a classifier with zipmap=False: int64 label + float probs."""
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["input", "w", "b"], ["scores"]),
            helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
        ],
        "skl",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 30])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2]),
        ],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def test_third_party_classifier_with_label_and_probabilities(tmp_path):
    train = load_dataset("breast-cancer:train")
    mean, std = train.x.mean(0), train.x.std(0)
    w, b = fit_linear((train.x - mean) / std, train.y, 2)
    w_raw = (w / std[:, None]).astype(np.float32)
    b_raw = (b - (mean / std) @ w).astype(np.float32)
    path = save(_sklearn_like_model(w_raw, b_raw), tmp_path / "skl.onnx")
    result = run(
        "eval", path, "--data", "breast-cancer", "--json", tmp_path / "e.json",
        "--at-sensitivity", "0.95",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "ROC AUC" in result.output and "at sensitivity >= 95.00 %" in result.output
    payload = json.loads((tmp_path / "e.json").read_text())
    assert payload["output"] == "probabilities"
    test = load_dataset("breast-cancer:test")
    pred = np.argmax(test.x @ w_raw + b_raw, axis=1)
    assert payload["accuracy"] == pytest.approx(np.mean(pred == test.y))
    assert payload["accuracy"] > 0.9
    malignant = test.y == 0
    assert payload["positive_class"] == "malignant"
    assert payload["sensitivity"] == pytest.approx(np.mean(pred[malignant] == 0))
    assert payload["specificity"] == pytest.approx(np.mean(pred[~malignant] == 1))
    # ROC AUC against scikit-learn's on the very scores the model gives (ONNX Runtime)
    import onnxruntime as ort
    from sklearn.metrics import roc_auc_score

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs = session.run(["probabilities"], {"input": test.x.astype(np.float32)})[0]
    assert payload["roc_auc"] == pytest.approx(roc_auc_score(malignant, probs[:, 0]), abs=1e-9)
    point = payload["operating_point"]
    assert point["sensitivity"] >= 0.95 and point["target_sensitivity"] == 0.95
    calls = probs[:, 0] >= point["threshold"]
    assert point["specificity"] == pytest.approx(np.mean(~calls[~malignant]))


def test_bad_usage_exits_2(tmp_path, digits_weights):
    w, b = digits_weights
    path = save(linear_image_model(w, b), tmp_path / "lin.onnx")
    cases = [
        (["--output", "nope"], "has no output 'nope'"),
        (["--input", "nope"], "has no input 'nope'"),
        (["--provider", "TotallyMadeUpProvider"], "CPUExecutionProvider"),
        (["--at-sensitivity", "0.95"], "--at-sensitivity: an operating point"),
    ]
    for extra, message in cases:
        result = run("eval", path, "--data", "digits", *extra)
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    result = run("eval", path, "--data", "breast-cancer")
    assert result.exit_code == 2 and "do not fit the model input" in result.output
    (tmp_path / "e.json").write_text("{}")
    result = run("eval", path, "--data", "digits", "--json", tmp_path / "e.json")
    assert result.exit_code == 2 and "--force" in result.output, "reports follow the output rule"
    result = run("eval", path, "--data", "digits", "--json", tmp_path / "e.json", "--force")
    assert result.exit_code == 0


def test_cli_basics():
    result = run("--help")
    assert result.exit_code == 0 and "inspect" in result.output and "eval" in result.output
    assert run("--version").output.startswith("qtool, version")


def test_missing_optional_package_gives_the_install_line(monkeypatch, tmp_path):
    """On a server without the torch extra, train says how to get it (exit 2), no traceback."""
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as if absent
    result = run("train", "mlp", "--out", tmp_path / "m.pt")
    assert result.exit_code == 2, result.output
    assert "pip install 'qtool[torch]'" in result.output and "Traceback" not in result.output
