"""`qtool quantize` on small real models trained on digits (torch CNN and MLP, a few seconds).

Everything runs real ONNX Runtime quantisation and sessions; expectations about the INT8
files are read back from the files themselves (initializer dtypes, graph wiring, metadata).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from qtool.cli import main
from qtool.data.datasets import load_dataset
from qtool.modelfile.load import sha256_file
from qtool.modelfile.metadata import qtool_metadata, set_metadata
from qtool.quantization.quantize import BudgetNotMet, QuantizeOptions, quantize_model

torch = pytest.importorskip("torch")

MEAN, STD = [0.3], [0.4]
META = {
    "qtool.normalization": {"mean": MEAN, "std": STD},
    "qtool.class_names": [str(i) for i in range(10)],
    "qtool.dataset": "digits",
    "qtool.model": "test-net",
}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _train(net, epochs: int, seed: int = 0):
    """A few seconds of Adam on the digits train split, inputs normalised like META says."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)  # the machine is shared; one thread is as fast for these sizes
    train = load_dataset("digits:train")
    x = torch.tensor((train.x - MEAN[0]) / STD[0])
    y = torch.tensor(train.y)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def _export(net, example, path: Path) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (example,),
            str(path),
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
            dynamo=False,
        )
    model = onnx.load(str(path))
    set_metadata(model, META)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    nn = torch.nn
    root = tmp_path_factory.mktemp("fp32")
    cnn = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    _train(cnn, 8)
    _train(mlp, 15)
    paths = {
        "cnn": _export(cnn, torch.zeros(1, 1, 8, 8), root / "cnn.onnx"),
        "mlp": _export(mlp, torch.zeros(1, 1, 8, 8), root / "mlp.onnx"),
        "outlier": root / "outlier.onnx",
    }
    _outlier_mlp(mlp, paths["outlier"])
    return paths


def _outlier_mlp(mlp, path: Path) -> None:
    """The trained MLP plus one hidden unit that fires at ~1e4 and feeds nothing downstream.

    FP32 output is unchanged (its outgoing weights are 0), but per-tensor INT8 activations of
    the hidden layer get a scale of ~40, so every ordinary activation rounds to 0: the INT8
    model is wrecked unless the hidden layer's nodes stay in FP32.
    """
    w1 = mlp[1].weight.detach().numpy().T.copy()  # (64, 64)
    b1 = mlp[1].bias.detach().numpy().copy()
    w2 = mlp[3].weight.detach().numpy().T.copy()  # (64, 10)
    b2 = mlp[3].bias.detach().numpy().copy()
    w1 = np.concatenate([w1, np.zeros((64, 1), np.float32)], axis=1)
    b1 = np.concatenate([b1, np.array([1e4], np.float32)])
    w2 = np.concatenate([w2, np.zeros((1, 10), np.float32)], axis=0)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"], name="flatten"),
            helper.make_node("Gemm", ["flat", "w1", "b1"], ["h"], name="fc1"),
            helper.make_node("Relu", ["h"], ["hr"], name="relu1"),
            helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"], name="fc2"),
        ],
        "outlier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [
            numpy_helper.from_array(a, n)
            for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    set_metadata(model, META)
    onnx.save(model, str(path))


def _int8_weight_check(path: Path) -> int:
    """Every Conv/Gemm/MatMul weight input comes from DequantizeLinear of an int8 initializer."""
    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    checked = 0
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            source = dq[node.input[1]]
            weight = inits[source.input[0]]
            assert weight.data_type == TensorProto.INT8, node.name
            assert numpy_helper.to_array(weight).dtype == np.int8
            checked += 1
    assert not any(
        t.data_type == TensorProto.FLOAT and len(t.dims) >= 2 for t in model.graph.initializer
    ), "a float weight matrix survived quantisation"
    return checked


# --- the happy path --------------------------------------------------------------------------


def test_cli_cnn_qdq_int8_weights_accuracy_json(tmp_path, models):
    src = models["cnn"]
    before = sha256_file(src)
    out, js = tmp_path / "cnn.int8.onnx", tmp_path / "q.json"
    result = run(
        "quantize", src, "--calib", "digits", "--out", out, "--json", js,
        "--max-accuracy-drop", "1.0", "--seed", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sha256_file(src) == before
    assert _int8_weight_check(out) == 4
    report = json.loads(js.read_text())
    for key in (
        "size_before", "size_after", "size_ratio", "validation", "test", "tensor_errors",
        "settings", "source_sha256", "within_budget", "fallback_steps",
    ):  # fmt: skip
        assert key in report, key
    assert report["size_after"] == out.stat().st_size
    assert report["size_ratio"] < 0.5
    val, test = report["validation"], report["test"]
    # the budget is judged on the val split; the test split is only reported
    assert (val["data"], val["samples"], val["role"]) == ("digits:val", 180, "budget")
    assert (test["data"], test["samples"], test["role"]) == ("digits:test", 360, "reported")
    assert test["fp32"] > 0.9 and val["drop_pp"] <= 1.0
    assert report["within_budget"] is True
    assert "digits:val, 180 samples (budget judged here)" in result.output
    assert "digits:test, 360 samples (reported only)" in result.output
    assert report["tensor_errors"] and all("sqnr_db" in e for e in report["tensor_errors"])
    assert report["settings"]["samples"] == 256 and report["settings"]["seed"] == 3
    assert "worst first" in result.output and "size ratio" in result.output

    # the metadata carries the settings and the source's own metadata, so eval works on it
    meta = qtool_metadata(onnx.load(str(out)))
    q = meta["quantization"]
    assert q["method"] == "minmax" and q["format"] == "qdq" and q["per_channel"] is True
    assert q["activation_type"] == "uint8" and q["weight_type"] == "int8"
    assert q["calibration"] == "digits" and q["samples"] == 256 and q["seed"] == 3
    assert isinstance(q["reduce_range"], bool) and q["onnxruntime_version"]
    # the placement: its mode and what it kept out in the metadata, how in the report
    assert q["placement"] == {"mode": "int8-kernels", "excluded": []}
    assert report["placement"]["kinds"].get("int8 kernel", 0) >= 4
    assert report["placement"]["rounds"][0]["conversions"] >= 2
    assert meta["source_sha256"] == before
    assert meta["normalization"] == {"mean": MEAN, "std": STD}
    evaluated = run("eval", out, "--data", "digits", "--json", tmp_path / "e.json")
    assert evaluated.exit_code == 0, evaluated.output
    acc = json.loads((tmp_path / "e.json").read_text())["accuracy"]
    assert acc == pytest.approx(test["int8"])

    # an existing output is refused without --force, and left alone
    stamp = sha256_file(out)
    again = run("quantize", src, "--calib", "digits", "--out", out)
    assert again.exit_code == 2 and "already exists" in again.output
    assert "Traceback" not in again.output and sha256_file(out) == stamp


def test_api_mlp_qoperator_per_tensor(tmp_path, models):
    out = tmp_path / "mlp.q.onnx"
    options = QuantizeOptions(
        fmt="qoperator", per_channel=False, samples=128, method="entropy", reduce_range=True,
        max_accuracy_drop=1.0,
    )  # fmt: skip
    report = quantize_model(models["mlp"], out, "digits", options)
    assert report.written and out.exists()
    model = onnx.load(str(out))
    qgemms = [n for n in model.graph.node if n.op_type == "QGemm"]
    assert len(qgemms) == 2 and not any(n.op_type == "Gemm" for n in model.graph.node)
    inits = {t.name: t for t in model.graph.initializer}
    for node in qgemms:  # QGemm(A, a_scale, a_zp, B, ...): B is the int8 weight
        assert inits[node.input[3]].data_type == TensorProto.INT8
    assert report.settings.reduce_range is True
    assert report.settings.reduce_range_reason == "set by the user"
    assert report.accuracy_drop_pp <= 1.0
    assert report.tensor_errors  # measured on the QDQ twin
    json.dumps(report.to_dict())  # JSON-able as it stands


def test_third_party_model_with_input_name_and_npz(tmp_path, models):
    """No qtool metadata: --input and the npz layout (MedMNIST-style) are all it needs."""
    model = onnx.load(str(models["mlp"]))
    del model.metadata_props[:]
    src = tmp_path / "foreign.onnx"
    onnx.save(model, str(src))
    train, test = load_dataset("digits:train"), load_dataset("digits:test")
    npz = tmp_path / "imgs.npz"
    np.savez(
        npz,
        train_images=(train.x[:, 0] * 255).astype(np.uint8),
        train_labels=train.y[:, None],
        test_images=(test.x[:, 0] * 255).astype(np.uint8),
        test_labels=test.y[:, None],
    )
    out, js = tmp_path / "foreign.int8.onnx", tmp_path / "f.json"
    args = ("--calib", f"npz:{npz}", "--input", "x", "--samples", 32, "--json", js)
    result = run("quantize", src, "--out", out, *args)
    assert result.exit_code == 0, result.output
    report = json.loads(js.read_text())
    assert report["test"]["data"] == f"npz:{npz}:test" and report["test"]["samples"] == 360
    assert report["validation"] is None  # the file has no val split: nothing judged there
    assert any("val accuracy not measured" in n for n in report["notes"])
    assert report["settings"]["calibration_split"] == "train"
    assert qtool_metadata(onnx.load(str(out)))["quantization"]["samples"] == 32

    # a budget needs a val split: never judged on the test split, said in one line
    budget = run("quantize", src, "--out", tmp_path / "b.onnx", *args[:6], "--max-accuracy-drop", 1)
    assert budget.exit_code == 2, budget.output
    assert "--val-data: an accuracy budget is judged on a labelled validation split" in (
        budget.output
    )
    assert "split 'val' does not exist" in budget.output and "Traceback" not in budget.output
    assert not (tmp_path / "b.onnx").exists()
    # naming the test split as validation data is refused: it would tune on the test split
    same = run(
        "quantize", src, "--out", tmp_path / "b.onnx", *args[:6], "--val-data", f"npz:{npz}:test"
    )
    assert same.exit_code == 2 and "the validation data is the test data" in same.output
    # other held-out labelled data is the explicit way to judge a budget
    held_out = run(
        "quantize", src, "--out", tmp_path / "b.onnx", *args[:6], "--val-data", "digits:val",
        "--max-accuracy-drop", 5, "--json", tmp_path / "b.json",
    )  # fmt: skip
    assert held_out.exit_code == 0, held_out.output
    judged = json.loads((tmp_path / "b.json").read_text())["validation"]
    assert judged["data"] == "digits:val" and judged["role"] == "budget"


# --- the accuracy-aware loop -----------------------------------------------------------------


def test_accuracy_aware_loop_keeps_damaged_nodes_fp32(tmp_path, models):
    src = models["outlier"]
    options = QuantizeOptions(per_channel=False, samples=64)
    plain = quantize_model(src, tmp_path / "plain.onnx", "digits", options)
    assert plain.accuracy_drop_pp > 20, "the outlier should wreck plain INT8"
    worst = plain.tensor_errors[0]
    assert worst.added_noise > 0.1 and worst.sqnr_db < 10  # the wreck shows in the ranking

    out, js = tmp_path / "fixed.onnx", tmp_path / "fixed.json"
    result = run(
        "quantize", src, "--calib", "digits", "--out", out, "--per-tensor", "--samples", 64,
        "--max-accuracy-drop", "1", "--fallback-step", "1", "--json", js,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(js.read_text())
    kept = report["settings"]["fp32_nodes"]
    assert {"relu1", "fc1"} & set(kept), kept
    assert report["fallback_steps"] and report["fallback_steps"][0]["added"]
    assert report["validation"]["drop_pp"] <= 1  # judged on val
    # each step's accuracy is the validation split's, the final one is the report's
    assert report["fallback_steps"][-1]["accuracy"] == report["validation"]["int8"]
    assert "accuracy-aware steps (1 tensor(s) per step," in result.output
    model = onnx.load(str(out))
    assert qtool_metadata(model)["quantization"]["fp32_nodes"] == kept
    by_name = {n.name: n for n in model.graph.node}
    for name in kept:  # the FP32 nodes still read float weights
        if by_name[name].op_type == "Gemm":
            w = next(t for t in model.graph.initializer if t.name == by_name[name].input[1])
            assert w.data_type == TensorProto.FLOAT


def test_unreachable_budget_writes_nothing_unless_keep_best(tmp_path, models):
    src = models["outlier"]
    out, js = tmp_path / "never.onnx", tmp_path / "never.json"
    args = ["quantize", src, "--calib", "digits", "--per-tensor", "--samples", 32]
    args += ["--out", out, "--max-accuracy-drop", "1", "--max-steps", "0", "--json", js]
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert "--max-accuracy-drop: accuracy drop" in result.output
    assert "exceeds the budget of 1.0 pp" in result.output
    assert "nothing written" in result.output and "Traceback" not in result.output
    assert not out.exists()
    report = json.loads(js.read_text())  # the report of the failure is still written
    assert report["written"] is False and report["within_budget"] is False

    kept = run(*args, "--keep-best", "--force")
    assert kept.exit_code == 1, kept.output
    assert out.exists() and "best attempt was written" in kept.output

    with pytest.raises(BudgetNotMet) as info:
        options = QuantizeOptions(per_channel=False, samples=32, max_accuracy_drop=1.0, max_steps=0)
        quantize_model(src, tmp_path / "api.onnx", "digits", options)
    assert info.value.exit_code == 1 and info.value.report.validation.drop_pp > 1
    assert not (tmp_path / "api.onnx").exists()


# --- bad input -------------------------------------------------------------------------------


def test_calibration_data_of_the_wrong_shape_is_exit_2(tmp_path, models):
    for name in ("cnn", "mlp"):
        src = models[name]
        before = sha256_file(src)
        out = tmp_path / f"{name}.bad.onnx"
        result = run("quantize", src, "--calib", "breast-cancer", "--out", out)
        assert result.exit_code == 2, result.output
        assert "calibration data breast-cancer" in result.output
        assert "cannot feed input 'x'" in result.output
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) <= 3
        assert not out.exists() and sha256_file(src) == before


def test_bad_options_are_exit_2(tmp_path, models):
    src = models["cnn"]
    cases = [
        (("--exclude-nodes", "nope"), "no node named nope"),
        (("--exclude-op-types", "Banana"), "not an op type ONNX Runtime quantises"),
        (("--input", "y"), "has no input 'y'"),
        (("--calib", "nosuch"), "unknown data set spec"),
    ]
    for extra, message in cases:
        args = ["quantize", src, "--out", tmp_path / "o.onnx", *extra]
        if "--calib" not in extra:
            args += ["--calib", "digits"]
        result = run(*args)
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.onnx").exists()


def test_every_option_is_a_flag_whose_param_name_is_the_field_name():
    """Library errors name QuantizeOptions fields (param=); the CLI maps those to flags."""
    from dataclasses import fields

    from qtool.cli import flag_for
    from qtool.commands.quantize import command

    names = {f.name for f in fields(QuantizeOptions)} - {"per_channel"}
    assert all(flag_for(command, name) for name in names), names
    assert flag_for(command, "providers") == "--provider"
    assert flag_for(command, "fmt") == "--format" and flag_for(command, "calib") == "--calib"
    assert flag_for(command, "per_tensor") == "--per-tensor"
