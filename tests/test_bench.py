"""`qtool bench` and its timing statistics: known samples, interleaving, real ONNX sessions."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from builders import conv_model, digits_linear_weights, linear_image_model, save
from click.testing import CliRunner
from onnx import TensorProto, helper

from qtool.benchmarking.bench import run_bench
from qtool.cli import main
from qtool.modelfile.load import sha256_file
from qtool.runtimes.timing import (
    Contender,
    bootstrap_median_ratio,
    latency_stats,
    measure_interleaved,
)

FAST = ["--runs", "15", "--warmup", "2", "--energy-window", "0.05", "--energy-rounds", "1"]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    result.text = " ".join(result.output.split())  # rich wraps lines at 80 columns
    return result


def assert_clean_exit2(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.text, result.output


# --- statistics on known samples -------------------------------------------------------------


def test_latency_stats_known_samples():
    ns = np.arange(1, 101) * 1_000_000  # 1..100 ms
    s = latency_stats(ns, items_per_call=4)
    assert s.runs == 100 and s.unit == "ms"
    assert s.mean_ms == pytest.approx(50.5)
    assert s.min_ms == 1.0 and s.max_ms == 100.0
    # linear interpolation between closest ranks: rank q * (n - 1)
    assert s.p50_ms == pytest.approx(50.5)
    assert s.p90_ms == pytest.approx(90.1)
    assert s.p99_ms == pytest.approx(99.01)
    assert s.std_ms == pytest.approx(np.sqrt(100 * 101 / 12))  # sample std of 1..n
    assert s.throughput_items_per_s == pytest.approx(4 / 0.0505)


def test_latency_stats_single_sample_and_empty():
    s = latency_stats([2_500_000])
    assert s.p50_ms == s.p99_ms == s.min_ms == s.max_ms == 2.5 and s.std_ms == 0.0
    with pytest.raises(ValueError):
        latency_stats([])


@pytest.mark.parametrize("true_ratio", [0.5, 1.0, 1.7])
def test_bootstrap_interval_contains_true_ratio(true_ratio):
    rng = np.random.default_rng(42)
    base = rng.lognormal(0.0, 0.2, 2000)
    other = true_ratio * rng.lognormal(0.0, 0.2, 2000)
    est = bootstrap_median_ratio(base, other, resamples=1000, seed=3)
    assert est.ci95_low < true_ratio < est.ci95_high
    assert est.ci95_low <= est.ratio <= est.ci95_high
    assert est.ci95_high - est.ci95_low < 0.1 * true_ratio
    assert "paired" in est.method


def test_bootstrap_is_seeded_and_unpaired_for_unequal_lengths():
    rng = np.random.default_rng(0)
    a, b = rng.normal(10, 1, 300), rng.normal(12, 1, 200)
    one = bootstrap_median_ratio(a, b, resamples=500, seed=7)
    two = bootstrap_median_ratio(a, b, resamples=500, seed=7)
    other = bootstrap_median_ratio(a, b, resamples=500, seed=8)
    assert one == two
    assert (one.ci95_low, one.ci95_high) != (other.ci95_low, other.ci95_high)
    assert one.ratio == pytest.approx(np.median(b) / np.median(a))
    assert "independently" in one.method


def test_interleaving_order_is_recorded_and_followed():
    log: list[str] = []
    contenders = [Contender(n, log.append, (n,)) for n in "ABC"]
    raw = measure_interleaved(contenders, runs=40, warmup=3, seed=5)
    measured = log[3 * 3 :]  # after the warm-up rounds
    assert measured == ["ABC"[i] for order in raw.order for i in order]
    assert raw.rounds == len(raw.order) == 40
    assert all(sorted(order) == [0, 1, 2] for order in raw.order)
    assert {order[0] for order in raw.order} == {0, 1, 2}  # nobody is always first
    assert all(len(lat) == 40 for lat in raw.latencies_ns)
    again = measure_interleaved(contenders, runs=40, warmup=3, seed=5)
    assert again.order == raw.order
    assert measure_interleaved(contenders, runs=40, warmup=3, seed=6).order != raw.order


def test_seconds_mode_runs_at_least_min_rounds():
    raw = measure_interleaved([Contender("x", int)], seconds=1e-9, warmup=0, min_rounds=7)
    assert raw.rounds == 7
    raw = measure_interleaved([Contender("x", int)], seconds=0.02, warmup=0, min_rounds=7)
    assert raw.rounds > 7 and raw.wall_s >= 0.019  # stops at the first round past the time


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
        assert group["rounds"] == 15 and len(group["order"]) == 15
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
            assert len(config["latencies_ms"]) == 15
        assert base["ratio"] is None
        ratio = q["ratio"]
        assert ratio["baseline"] == "conv.onnx"
        lo, hi = ratio["latency_p50_ratio_ci95"]
        assert lo <= ratio["latency_p50_ratio"] <= hi
        assert ratio["latency_p50_ratio"] == pytest.approx(
            np.median(q["latencies_ms"]) / np.median(base["latencies_ms"])
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
    result = run_bench([fp32, int8], runs=5, warmup=1, energy="off", data="digits:val")
    assert result.energy["method"] == "off"
    config = result.groups[0].configs[1]
    assert config.energy is None and config.ratio.energy_ratio is None
    assert "digits" in config.inputs and "'x'" in config.inputs
    assert result.baseline == "conv.onnx"
    mismatch = run("bench", fp32, "--data", "breast-cancer", *FAST)
    assert_clean_exit2(mismatch, "do not fit the model input")


def test_unknown_provider_names_installed_ones(models):
    fp32, _ = models
    result = run("bench", fp32, "--providers", "nosuch", *FAST)
    assert_clean_exit2(result, "nosuch", "CPUExecutionProvider")


def test_list_providers():
    result = run("bench", "--list-providers")
    assert result.exit_code == 0 and "CPUExecutionProvider" in result.text


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
    assert_clean_exit2(run("bench", static, "--batch", "4", *FAST), "fixed batch of 1", "--batch 1")
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
    result = run_bench([path], batches=[2], runs=3, warmup=0, energy="off")
    assert result.groups[0].configs[0].latency.runs == 3


def test_bad_usage_exit_2(models, tmp_path):
    fp32, _ = models
    assert_clean_exit2(run("bench", fp32, "--runs", "5", "--seconds", "1"), "not both")
    assert_clean_exit2(run("bench", fp32, "--batch", "0", *FAST), "positive integers")
    assert_clean_exit2(run("bench", tmp_path / "missing.onnx", *FAST), "missing.onnx")
    assert_clean_exit2(run("bench"), "at least one MODEL")
