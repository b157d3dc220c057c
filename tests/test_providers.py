"""--provider across the commands, on real models: bench (interleaved pairs, accuracy per
provider, a provider that cannot load a model), eval, quantize, flip campaigns, package and
predict. OpenVINO is exercised for real where its plugin offers a CPU device
(test_providers_openvino.py); here, where it does not, its refusals are checked."""

from __future__ import annotations

import json

import numpy as np
import pytest
from builders import digits_linear_weights, linear_image_model, save
from click.testing import CliRunner
from onnx import TensorProto, helper

from qtool.cli import main
from qtool.runtimes.providers import PROVIDERS

FAST = ["--runs", "10", "--warmup", "1", "--energy", "off", "--thread-check", "0.05"]
OPENVINO_REASON = PROVIDERS.get("openvino").unusable_reason()


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    result.text = " ".join(result.output.split())  # rich wraps lines at 80 columns
    return result


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A digits classifier (least squares on the train split) and a model whose custom op
    the CPU provider has no kernel for."""
    root = tmp_path_factory.mktemp("providers")
    good = save(linear_image_model(*digits_linear_weights()), root / "lin.onnx")
    graph = helper.make_graph(
        [helper.make_node("Mystery", ["x"], ["y"], domain="custom.qtool", name="m0")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom.qtool", 1)]
    )
    model.ir_version = 9
    return good, save(model, root / "custom.onnx")


def test_bench_with_data_scores_every_pair_and_flags_the_budget(files, tmp_path):
    good, _ = files
    out = tmp_path / "b.json"
    result = run("bench", good, "--data", "digits", "--max-accuracy-drop", "0.5", *FAST,
                 "--json", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "accuracy per provider on digits (test), 360 samples" in result.text
    assert "cpu · fp32" in result.text and " ok" in result.text
    payload = json.loads(out.read_text())
    (row,) = payload["accuracy"]
    assert row["provider"] == "cpu" and row["top1_agreement_with_cpu"] == 1.0
    assert row["within_budget"] is True and row["max_accuracy_drop_pp"] == 0.5
    config = payload["groups"][0]["configs"][0]
    assert config["provider"] == "cpu" and config["precision"] == "fp32"
    assert config["threads_used"]["pinned"] is True, config["threads_used"]
    assert config["threads_used"]["threads"] == 1


def test_a_model_the_cpu_provider_cannot_load_is_refused_up_front_in_one_line(files, tmp_path):
    """Models are validated where they come in (ONNX Runtime must build a session), so bench
    refuses the model before timing anything and writes nothing."""
    good, custom = files
    out = tmp_path / "b.json"
    result = run("bench", good, custom, "--batch", "1,4", *FAST, "--json", out)
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(custom) in errors[0]
    assert "not a model ONNX Runtime can load" in errors[0] and "Mystery" in errors[0]
    assert not out.exists() and "p50 latency" not in result.text


def test_list_providers_json_names_every_provider_with_its_reason(tmp_path):
    out = tmp_path / "providers.json"
    result = run("bench", "--list-providers", "--json", out)
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(out.read_text())["providers"]}
    assert rows["cpu"]["usable"] is True and rows["cpu"]["reason"] is None
    assert rows["openvino"]["usable"] == (OPENVINO_REASON is None)
    assert rows["openvino"]["reason"] == OPENVINO_REASON
    assert rows["cuda"]["reason"] == "out of scope: GPU"
    assert "openvino" in result.text


@pytest.mark.skipif(OPENVINO_REASON is None, reason="OpenVINO is usable here")
def test_an_unusable_provider_is_refused_with_its_reason_everywhere(files, tmp_path):
    good, _ = files
    for args in (
        ["bench", good, "--provider", "cpu,openvino", *FAST],
        ["eval", good, "--data", "digits", "--provider", "cpu,openvino"],
        ["flip", good, "--bits", "1,2", "--trials", "2", "--data", "digits", "--provider",
         "openvino"],
        ["quantize", good, "--calib", "digits", "--out", tmp_path / "q.onnx", "--provider",
         "cpu,openvino"],
        ["package", good, "--out", tmp_path / "bundle", "--provider", "openvino"],
    ):  # fmt: skip
        result = run(*args)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert "error: --provider: execution provider 'openvino'" in result.text, args
        assert OPENVINO_REASON in result.text
    assert not (tmp_path / "q.onnx").exists() and not (tmp_path / "bundle").exists()


def test_eval_records_provider_and_precision(files, tmp_path):
    good, _ = files
    out = tmp_path / "e.json"
    result = run("eval", good, "--data", "digits", "--precision", "auto", "--json", out)
    assert result.exit_code == 0, result.output
    assert "on cpu (auto)" in result.text
    payload = json.loads(out.read_text())
    assert payload["provider"] == "cpu" and payload["precision"] == "auto"
    twice = run("eval", good, "--data", "digits", "--provider", "cpu,cpu")
    assert twice.exit_code == 2 and "named twice" in twice.text


def test_quantize_checks_accuracy_on_the_named_providers(files, tmp_path):
    good, _ = files
    out, report = tmp_path / "q.onnx", tmp_path / "q.json"
    result = run("quantize", good, "--calib", "digits", "--out", out, "--provider", "cpu",
                 "--max-accuracy-drop", "2", "--json", report)  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(report.read_text())
    val, test = payload["providers"]  # one row per split the checks ran on, per provider
    assert [val["split"], test["split"]] == ["val", "test"]
    assert {val["provider"], test["provider"]} == {"cpu"} and val["precision"] == "fp32"
    assert val["fp32"] == payload["validation"]["fp32"]
    assert test["drop_pp"] == payload["test"]["drop_pp"]


def test_campaigns_record_the_provider_their_trials_ran_on(files, tmp_path):
    good, _ = files
    out = tmp_path / "c.json"
    result = run("flip", good, "--bits", "1,4", "--trials", "3", "--data", "digits",
                 "--provider", "cpu", "--json", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "run on cpu (fp32)" in result.text
    payload = json.loads(out.read_text())
    assert payload["providers"] == ["cpu"]
    assert {m["provider"] for m in payload["models"]} == {"cpu"}
    assert {s["provider"] for s in payload["stats"]} == {"cpu"}


def test_package_records_the_provider_and_predict_runs_on_it(files, tmp_path):
    good, _ = files
    bundle = tmp_path / "bundle"
    result = run("package", good, "--out", bundle, "--provider", "cpu")
    assert result.exit_code == 0, result.output
    assert "validated on" in result.text and "cpu (CPUExecutionProvider), fp32" in result.text
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["runtime"]["provider"] == "cpu" and manifest["runtime"]["precision"] == "fp32"
    assert "validated on cpu" in (bundle / "MODEL_CARD.md").read_text()
    samples = tmp_path / "s.npz"
    np.savez(samples, x=np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32))
    out = tmp_path / "p.json"
    ran = run("predict", bundle, samples, "--json", out)
    assert ran.exit_code == 0, ran.output
    payload = json.loads(out.read_text())
    assert payload["provider"] == "cpu" and payload["provider_recorded"] == "cpu"
    assert payload["provider_chosen"].startswith("recorded in the bundle")


def test_predict_refuses_a_recorded_provider_it_cannot_use_unless_told(files, tmp_path):
    """A bundle packaged where OpenVINO ran (its manifest says so) on a server where it
    does not: refused with the reason; --provider cpu runs it deliberately."""
    good, _ = files
    bundle = tmp_path / "bundle"
    assert run("package", good, "--out", bundle, "--provider", "cpu").exit_code == 0
    manifest_path = bundle / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["runtime"].update(provider="openvino", ort_name="OpenVINOExecutionProvider")
    manifest_path.write_text(json.dumps(manifest))  # the manifest is not among hashed files
    samples = tmp_path / "s.npz"
    np.savez(samples, x=np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32))
    refused = run("predict", bundle, samples)
    if OPENVINO_REASON is None:
        assert refused.exit_code == 0 and "on openvino" in refused.text
    else:
        assert refused.exit_code == 2 and "Traceback" not in refused.output
        assert "validated on execution provider openvino (fp32), which cannot be used" in (
            refused.text
        )
        assert OPENVINO_REASON in refused.text and refused.text.startswith("error: --provider:")
        assert "another provider to run it there deliberately (e.g. cpu" in refused.text
    told = run("predict", bundle, samples, "--provider", "cpu")
    assert told.exit_code == 0 and "on cpu (fp32), asked)" in told.text
