"""`qtool export` and the zoo: parity, dynamic batch, metadata, user factories, refusals."""

from __future__ import annotations

import json
import textwrap
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from qtool.cli import main
from qtool.data.datasets import fit_to_input, load_dataset, normalize
from qtool.modelfile.load import load_model, sha256_file
from qtool.modelfile.metadata import qtool_metadata
from qtool.modelfile.summary import summarize

torch = pytest.importorskip("torch")

from qtool.models.checkpoint import (  # noqa: E402
    build_from_checkpoint,
    load_checkpoint,
    state_dict_sha256,
)

ZOO_DATA = {"cnn": "digits", "sasa": "digits", "mlp": "breast-cancer"}
USER_MODEL = """
import torch
from torch import nn


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def build():
    torch.manual_seed(0)
    return Small()


class Sneaky(Small):
    # computes something else while being exported: the ONNX file is not this model
    def forward(self, x):
        out = super().forward(x)
        if torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting():
            return out * 2
        return out


def sneaky():
    torch.manual_seed(0)
    return Sneaky()


def not_a_module():
    return 42
"""


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def assert_bad_input(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def prepared_test_samples(path, data: str) -> np.ndarray:
    meta = qtool_metadata(load_model(path))
    x = fit_to_input(load_dataset(data, "test").x, meta["input_shape"])
    norm = meta["normalization"]
    return normalize(x, norm["mean"], norm["std"])


@pytest.fixture()
def user_file(tmp_path):
    path = tmp_path / "user_model.py"
    path.write_text(textwrap.dedent(USER_MODEL))
    return path


@pytest.mark.parametrize("name", ["cnn", "sasa", "mlp"])
def test_zoo_parity_on_real_test_samples(zoo_models, zoo_checkpoints, name):
    """Independent of the exporter's own check: torch vs ORT on the whole test split."""
    path = zoo_models[name]
    onnx.checker.check_model(load_model(path), full_check=True)
    x = prepared_test_samples(path, ZOO_DATA[name])
    module = build_from_checkpoint(load_checkpoint(zoo_checkpoints[name]))
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    got = session(path).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)
    assert np.mean(got.argmax(1) == expected.argmax(1)) == 1.0
    labels = load_dataset(ZOO_DATA[name], "test").y
    assert np.mean(got.argmax(1) == labels) > 0.8  # briefly trained, still a real model
    parity = qtool_metadata(load_model(path))["parity"]
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-4
    assert parity["batches"][0] == 1 and 32 in parity["batches"]


@pytest.mark.parametrize("name", ["cnn", "sasa", "mlp"])
def test_dynamic_batch_runs_at_1_and_32(zoo_models, name):
    sess = session(zoo_models[name])
    shape = sess.get_inputs()[0].shape
    assert isinstance(shape[0], str)  # symbolic batch
    x = prepared_test_samples(zoo_models[name], ZOO_DATA[name])[:32]
    assert len(x) == 32
    one = sess.run(None, {"input": x[:1]})[0]
    many = sess.run(None, {"input": x})[0]
    assert one.shape[0] == 1 and many.shape[0] == 32
    np.testing.assert_allclose(one[0], many[0], atol=1e-5)


@pytest.mark.parametrize("name", ["cnn", "sasa", "mlp"])
def test_metadata_records_what_later_stages_need(zoo_models, zoo_checkpoints, name):
    model = load_model(zoo_models[name])
    meta = qtool_metadata(model)
    config = load_checkpoint(zoo_checkpoints[name])["config"]
    assert meta["version"] == "0.1.0" and meta["model"] == name
    assert meta["dataset"] == ZOO_DATA[name]
    assert meta["normalization"] == config["normalization"]
    assert meta["class_names"] == config["class_names"]
    assert meta["input_shape"] == config["input_shape"]
    assert meta["weights_sha256"] == state_dict_sha256(
        load_checkpoint(zoo_checkpoints[name])["state_dict"]
    )
    assert meta["exporter"] == "dynamo"
    assert meta["opset"] == next(o.version for o in model.opset_import if o.domain == "")
    assert meta["seed"] == 0
    assert "architecture" not in meta  # the default size: bytes as before sizes existed
    # no exporter debris (node-level stack traces would double the file size); only the
    # fixed-role mark on the attention gather Convs
    props = [(p.key, p.value) for n in model.graph.node for p in n.metadata_props]
    assert set(props) <= {("qtool.role", "fixed")}
    assert len(props) == (8 if name == "sasa" else 0)  # key and value gathers of 4 layers
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}


def test_sasa_is_plain_ops_and_smaller_than_cnn(zoo_models):
    cnn, sasa = summarize(zoo_models["cnn"]), summarize(zoo_models["sasa"])
    # q.k and attn.v of 4 attention layers as Mul + ReduceSum (dot products written out)
    assert sasa.op_histogram.get("ReduceSum", 0) == 8
    assert "Transpose" not in sasa.op_histogram
    assert "Col2Im" not in sasa.op_histogram and "Im2Col" not in sasa.op_histogram
    assert sasa.parameters < cnn.parameters and sasa.flops < cnn.flops
    assert cnn.flops > 1_000_000 and sasa.flops > 1_000_000
    result = run("inspect", str(zoo_models["sasa"]))
    assert result.exit_code == 0 and "FLOPs" in result.output and "parameters" in result.output


def test_sasa_quantizes_with_onnxruntime(zoo_models, tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    x = prepared_test_samples(zoo_models["sasa"], "digits")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": x[i : i + 16]} for i in range(0, 64, 16)])

        def get_next(self):
            return next(self.batches, None)

    out = tmp_path / "sasa.int8.onnx"
    quantize_static(str(zoo_models["sasa"]), str(out), Reader(), quant_format=QuantFormat.QDQ)
    ops = Counter(n.op_type for n in onnx.load(str(out)).graph.node)
    assert ops["QuantizeLinear"] > 10
    fp32 = session(zoo_models["sasa"]).run(None, {"input": x})[0].argmax(1)
    int8 = session(out).run(None, {"input": x})[0].argmax(1)
    assert np.mean(fp32 == int8) > 0.9


def test_user_factory_export_with_and_without_weights(user_file, tmp_path):
    before = sha256_file(user_file)
    out = tmp_path / "user.onnx"
    result = run("export", f"{user_file}:build", "--input-shape", "1,3,16,16", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "random normal samples" in result.output
    meta = qtool_metadata(load_model(out))
    assert meta["model"] == f"{user_file}:build"
    assert meta["source_sha256"] == before
    assert meta["input_shape"] == [1, 3, 16, 16]
    assert "normalization" not in meta
    sess = session(out)
    for n in (1, 32):
        assert sess.run(None, {"input": np.zeros((n, 3, 16, 16), np.float32)})[0].shape == (n, 5)

    # with a state_dict: the ONNX file computes with those weights, not the factory's
    import importlib.util

    spec = importlib.util.spec_from_file_location("user_model_copy", user_file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    trained = mod.build()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.5)
    weights = tmp_path / "w.pt"
    torch.save(trained.state_dict(), weights)
    w_before = sha256_file(weights)
    out2 = tmp_path / "user2.onnx"
    result = run(
        "export", f"{user_file}:build", "--input-shape", "1,3,16,16", "--weights", str(weights),
        "--out", str(out2), "--static-batch",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        expected = trained(torch.from_numpy(x)).numpy()
    sess2 = session(out2)
    assert sess2.get_inputs()[0].shape == [1, 3, 16, 16]
    np.testing.assert_allclose(sess2.run(None, {"input": x})[0], expected, atol=1e-5)
    assert qtool_metadata(load_model(out2))["weights_sha256"] == state_dict_sha256(
        trained.state_dict()
    )
    assert sha256_file(weights) == w_before and sha256_file(user_file) == before


def test_failed_parity_leaves_no_file(user_file, tmp_path):
    out = tmp_path / "sneaky.onnx"
    result = run("export", f"{user_file}:sneaky", "--input-shape", "1,3,8,8", "--out", str(out))
    assert result.exit_code == 1, result.output
    assert "parity check failed" in result.output and "Traceback" not in result.output
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["user_model.py"]  # no temp files


def test_zero_tolerance_fails_on_real_float_noise(zoo_checkpoints, tmp_path):
    out = tmp_path / "cnn.onnx"
    args = ["export", "cnn", "--weights", str(zoo_checkpoints["cnn"]), "--out", str(out)]
    result = run(*args, "--atol", "0", "--rtol", "0")
    assert result.exit_code == 1 and "max abs diff" in result.output, result.output
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert run(*args).exit_code == 0 and out.exists()
    before = sha256_file(out)
    assert_bad_input(run(*args), "already exists", "--force")
    assert sha256_file(out) == before


def test_torchscript_exporter_at_opset_17(zoo_checkpoints, tmp_path):
    out = tmp_path / "mlp.onnx"
    result = run(
        "export", "mlp", "--weights", str(zoo_checkpoints["mlp"]), "--out", str(out),
        "--exporter", "torchscript", "--opset", "17", "--json", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    model = load_model(out)
    assert next(o.version for o in model.opset_import if o.domain == "") == 17
    assert qtool_metadata(model)["exporter"] == "torchscript"
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["parity"]["passed"] and report["parity"]["samples"] == 114


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["cnn"], ["needs its trained weights", "--weights"]),
        (["resnet"], ["unknown model 'resnet'"]),
        (["cnn", "--weights", "{ckpt_mlp}"], ["holds a 'mlp' model"]),
        (["cnn", "--weights", "{ckpt_cnn}", "--opset", "17"], ["opset >= 18", "torchscript"]),
        (["cnn", "--weights", "{ckpt_cnn}", "--input-shape", "1,3,32,32"], ["does not match"]),
        (["{user}:build"], ["--input-shape"]),
        (["{user}:build", "--input-shape", "1,a"], ["is not a shape"]),
        (["{user}:missing", "--input-shape", "1,3,8,8"], ["no callable 'missing'"]),
        (["{user}:not_a_module", "--input-shape", "1,3,8,8"], ["not a torch.nn.Module"]),
        (["{tmp}/nope.py:build", "--input-shape", "1,3,8,8"], ["does not exist"]),
        (["cnn", "--weights", "{tmp}/missing.pt"], ["does not exist"]),
    ],
)
def test_export_bad_input_exits_2(zoo_checkpoints, user_file, tmp_path, args, fragments):
    values = {
        "ckpt_mlp": zoo_checkpoints["mlp"],
        "ckpt_cnn": zoo_checkpoints["cnn"],
        "user": user_file,
        "tmp": tmp_path,
    }
    out = tmp_path / "out.onnx"
    result = run("export", *(a.format(**values) for a in args), "--out", str(out))
    assert_bad_input(result, *fragments)
    assert not out.exists()


def test_same_seed_gives_byte_identical_onnx_files(tmp_path):
    """Training records run details (time) in the checkpoint; the ONNX file must not vary."""
    outs = []
    for i in range(2):
        ckpt, onnx_path = tmp_path / f"m{i}.pt", tmp_path / f"m{i}.onnx"
        assert run("train", "mlp", "--out", str(ckpt), "--epochs", "3").exit_code == 0
        assert run("export", "mlp", "--weights", str(ckpt), "--out", str(onnx_path)).exit_code == 0
        outs.append(sha256_file(onnx_path))
    assert outs[0] == outs[1]
