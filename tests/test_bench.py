"""`qtool bench` end to end on real ONNX models: tables, JSON report, plot, bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from builders import conv_model, digits_linear_weights, linear_image_model, save
from click.testing import CliRunner
from onnx import TensorProto, helper

from qtool.benchmarking import BenchPlan, run_bench
from qtool.cli import main
from qtool.modelfile.load import sha256_file

FAST = [
    "--runs", "15", "--warmup", "2", "--energy-window", "0.05", "--energy-rounds", "1",
    "--thread-check", "0.05",
]  # fmt: skip


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    result.text = " ".join(result.output.split())  # rich wraps lines at 80 columns
    return result


def assert_clean_exit2(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.text, result.output


# --- real models ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """An FP32 conv model and its INT8 (QDQ, static) quantisation, both real files."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from qtool.data.datasets import load_dataset

    root = tmp_path_factory.mktemp("bench")
    fp32 = save(conv_model(0), root / "conv.onnx")
    calib = load_dataset("digits:train").take(32, seed=0).x

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": calib[i : i + 8]} for i in range(0, 32, 8)])

        def get_next(self):
            return next(self.items, None)

    int8 = root / "conv.int8.onnx"
    quantize_static(
        str(fp32),
        str(int8),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return fp32, int8


def test_bench_fp32_vs_int8_end_to_end(models, tmp_path):
    fp32, int8 = models
    before = [sha256_file(fp32), sha256_file(int8)]
    out = tmp_path / "bench.json"
    result = run("bench", fp32, int8, "--batch", "1,4", *FAST, "--json", out, "--seed", 3)
    assert result.exit_code == 0, result.output
    assert [sha256_file(fp32), sha256_file(int8)] == before
    assert "ESTIMATED" in result.text and "CPU-time ratio" in result.text
    assert "conv.int8.onnx" in result.text and "bootstrap 95 % CI" in result.text
    payload = json.loads(out.read_text())
    assert payload["settings"]["seed"] == 3 and payload["settings"]["spinning"] is False
    assert payload["energy"]["method"] == "estimate"
    assert payload["energy"]["label"] == "estimated"
    assert "CPU-time ratio" in payload["energy"]["formula"]
    assert [g["batch"] for g in payload["groups"]] == [1, 4]
    for group in payload["groups"]:
        assert group["rounds"] == 15 and group["order_summary"]["rounds"] == 15
        assert sum(group["order_summary"]["first_counts"]) == 15 and group["order"] is None
        assert len(group["energy_order"]) == 1
        base, q = group["configs"]
        for config in (base, q):
            lat = config["latency"]
            assert lat["unit"] == "ms" and lat["runs"] == 15
            assert lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
            assert lat["p99_ms"] <= lat["max_ms"]
            assert lat["throughput_items_per_s"] > 0
            energy = config["energy"]
            assert energy["method"] == "estimated" and energy["unit"] == "mJ"
            assert "estimated" in energy["formula"]
            assert energy["mj_per_call"] == pytest.approx(energy["cpu_ms_per_call"] * 7.32)
            assert energy["mj_per_item"] == pytest.approx(energy["mj_per_call"] / group["batch"])
            assert config["latencies_ms"] is None  # summaries and a histogram by default
            hist = config["latency_histogram"]
            assert sum(hist["counts"]) == 15 and len(hist["edges_ms"]) == len(hist["counts"]) + 1
            assert hist["edges_ms"][0] <= lat["min_ms"] and lat["max_ms"] < hist["edges_ms"][-1]
        assert base["ratio"] is None
        ratio = q["ratio"]
        assert ratio["baseline"] == "conv.onnx"
        lo, hi = ratio["latency_p50_ratio_ci95"]
        assert lo <= ratio["latency_p50_ratio"] <= hi
        assert ratio["latency_p50_ratio"] == pytest.approx(
            q["latency"]["p50_ms"] / base["latency"]["p50_ms"]
        )
        cpu_ratio = q["energy"]["cpu_ms_per_call"] / base["energy"]["cpu_ms_per_call"]
        assert ratio["energy_ratio"] == pytest.approx(cpu_ratio)  # estimate: CPU-time ratio


def test_bench_with_data_and_plot(models, tmp_path):
    w, b = digits_linear_weights()
    lin = save(linear_image_model(w, b), tmp_path / "lin.onnx")
    fp32, _ = models
    plot = tmp_path / "bench.png"
    result = run("bench", lin, fp32, "--data", "digits", *FAST, "--plot", plot)
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = run("bench", lin, "--data", "digits", *FAST, "--plot", plot)
    assert_clean_exit2(again, "already exists", "--force")
    assert run("bench", lin, *FAST, "--plot", plot, "--force").exit_code == 0


def test_api_energy_off_and_data_inputs(models):
    fp32, int8 = models
    plan = BenchPlan(runs=5, warmup=1, energy="off")
    result = run_bench([fp32, int8], plan, data="digits:val")
    assert result.energy["method"] == "off"
    config = result.groups[0].configs[1]
    assert config.energy is None and config.ratio.energy_ratio is None
    assert "digits" in config.inputs and "'x'" in config.inputs
    assert result.baseline == "conv.onnx"
    mismatch = run("bench", fp32, "--data", "breast-cancer", *FAST)
    assert_clean_exit2(mismatch, "do not fit the model input")


def test_unknown_provider_names_installed_ones(models):
    fp32, _ = models
    result = run("bench", fp32, "--provider", "nosuch", *FAST)
    assert_clean_exit2(result, "error: --provider:", "nosuch", "CPUExecutionProvider")
    gpu = run("bench", fp32, "--providers", "cpu,cuda", *FAST)  # the old spelling still works
    assert_clean_exit2(gpu, "error: --provider:", "'cuda'", "out of scope: GPU")
    twice = run("bench", fp32, "--provider", "cpu,CPUExecutionProvider", *FAST)
    assert_clean_exit2(twice, "error: --provider:", "named twice")


def test_list_providers():
    result = run("bench", "--list-providers")
    assert result.exit_code == 0 and "CPUExecutionProvider" in result.text
    assert "cpu precision:" in result.text and "intra_op_num_threads" in result.text
    assert "out of scope: GPU" in result.text  # unusable ones are listed with the reason


def test_raw_samples_only_when_asked(models, tmp_path):
    fp32, _ = models
    out = tmp_path / "raw.json"
    args = ["--runs", "7", "--warmup", "0", "--energy", "off", "--json", out]
    result = run("bench", fp32, "--threads", "1,2", *args, "--raw-samples")
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["settings"]["raw_samples"] is True
    assert [g["threads"] for g in payload["groups"]] == [1, 2]
    for group in payload["groups"]:
        config = group["configs"][0]
        samples = config["latencies_ms"]
        assert len(samples) == 7 == sum(config["latency_histogram"]["counts"])
        assert min(samples) == config["latency"]["min_ms"]
        assert np.median(samples) == pytest.approx(config["latency"]["p50_ms"])
        assert len(group["order"]) == 7 and sorted(group["order"][0]) == [0]
    assert payload["providers"][0]["ort_name"] == "CPUExecutionProvider"
    assert "intra_op_num_threads" in payload["providers"][0]["threads_pinned_by"]


def _save_graph(path, inputs, nodes, outputs):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def test_unsupported_input_types_exit_2(tmp_path):
    strings = _save_graph(
        tmp_path / "str.onnx",
        [helper.make_tensor_value_info("s", TensorProto.STRING, ["N"])],
        [helper.make_node("Identity", ["s"], ["o"])],
        [helper.make_tensor_value_info("o", TensorProto.STRING, ["N"])],
    )
    seq_type = helper.make_sequence_type_proto(
        helper.make_tensor_type_proto(TensorProto.FLOAT, ["N"])
    )
    sequence = _save_graph(
        tmp_path / "seq.onnx",
        [helper.make_value_info("q", seq_type)],
        [helper.make_node("SequenceLength", ["q"], ["n"])],
        [helper.make_tensor_value_info("n", TensorProto.INT64, [])],
    )
    for path, kind in ((strings, "tensor(string)"), (sequence, "seq(tensor(float))")):
        before = sha256_file(path)
        result = run("bench", path, *FAST)
        assert_clean_exit2(result, kind, "numeric and bool tensors only")
        assert sha256_file(path) == before


def test_static_batch_and_symbolic_dims_exit_2(tmp_path):
    w, b = np.zeros((64, 10), np.float32), np.zeros(10, np.float32)
    static = save(linear_image_model(w, b, input_shape=(1, 1, 8, 8)), tmp_path / "static.onnx")
    assert run("bench", static, *FAST).exit_code == 0  # batch 1 fits
    fixed = run("bench", static, "--batch", "4", *FAST)
    assert_clean_exit2(fixed, "error: --batch:", "fixed batch of 1", "at batch 1")
    symbolic = _save_graph(
        tmp_path / "sym.onnx",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T"])],
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "T"])],
    )
    assert_clean_exit2(run("bench", symbolic, *FAST), "symbolic dimension 'T'")


def test_int_and_bool_inputs_are_fed(tmp_path):
    path = _save_graph(
        tmp_path / "mixed.onnx",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, ["N", 3]),
            helper.make_tensor_value_info("m", TensorProto.BOOL, ["N", 3]),
        ],
        [
            helper.make_node("Cast", ["m"], ["mi"], to=TensorProto.INT64),
            helper.make_node("Add", ["i", "mi"], ["o"]),
        ],
        [helper.make_tensor_value_info("o", TensorProto.INT64, ["N", 3])],
    )
    result = run_bench([path], BenchPlan(batches=[2], runs=3, warmup=0, energy="off"))
    assert result.groups[0].configs[0].latency.runs == 3


def test_bad_usage_exit_2(models, tmp_path):
    fp32, _ = models
    assert_clean_exit2(run("bench", fp32, "--runs", "5", "--seconds", "1"), "not both")
    assert_clean_exit2(run("bench", fp32, "--batch", "0", *FAST), "--batch:", "integers >= 1")
    assert_clean_exit2(run("bench", fp32, "--threads", "1,x", *FAST), "--threads:", "'1,x'")
    assert_clean_exit2(run("bench", tmp_path / "missing.onnx", *FAST), "missing.onnx")
    assert_clean_exit2(run("bench"), "at least one MODEL")


def test_analytic_energy_beside_the_estimate_each_labelled(models, tmp_path):
    fp32, int8 = models
    out = tmp_path / "bench.json"
    result = run("bench", fp32, int8, *FAST, "--energy", "estimate,analytic", "--json", out)
    assert result.exit_code == 0, result.output
    assert "energy/item (mJ, ESTIMATED)" in result.text
    assert "energy/inference (mJ, ANALYTIC)" in result.text
    assert "analytic ratio vs baseline" in result.text and "Horowitz" in result.text
    assert "never compared as if alike" in result.text
    payload = json.loads(out.read_text())
    assert payload["settings"]["energy"] == "estimate"
    assert payload["settings"]["analytic_energy"] is True
    analytic = payload["analytic"]
    assert analytic["kind"] == "analytic" and "ISSCC 2014" in analytic["source"]
    bills = analytic["models"]
    assert bills["conv.onnx"]["fp32_macs"] == bills["conv.int8.onnx"]["int8_macs"] > 0
    assert analytic["ratio_vs_baseline"]["conv.onnx"] == 1.0
    assert 0 < analytic["ratio_vs_baseline"]["conv.int8.onnx"] < 1
    # the measured kind keeps its own ratio; no ratio crosses kinds
    ratio = payload["groups"][0]["configs"][1]["ratio"]
    assert ratio["energy_ratio_note"].startswith("estimated")
    alone = run("bench", fp32, *FAST, "--energy", "analytic", "--json", tmp_path / "a.json")
    assert alone.exit_code == 0, alone.output  # analytic alone = auto,analytic
    assert json.loads((tmp_path / "a.json").read_text())["settings"]["energy"] == "auto"


def test_bad_energy_lists_exit_2(models):
    fp32, _ = models
    for value in ("rapl,estimate", "banana", "analytic,watts"):
        assert_clean_exit2(run("bench", fp32, *FAST, "--energy", value), "--energy:", "analytic")
