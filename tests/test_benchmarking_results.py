"""The report's figures from known measurements: energy (estimated and RAPL), ratios,
summaries with a histogram instead of every sample."""

from __future__ import annotations

import numpy as np
import pytest

import qtool
import qtool.runtimes.timing  # noqa: F401  (the regenerate recipe names it)
from qtool.benchmarking.results import (
    GroupResult,
    add_ratios,
    config_result,
    energy_info,
    energy_result,
    mean_idle,
    order_summary,
)
from qtool.runtimes.energy import EnergyPlan, EnergyWindow, IdlePower
from qtool.runtimes.providers import PROVIDERS

ESTIMATE = EnergyPlan("estimate", "estimate", "asked for", watts_per_core=10.0)
RAPL = EnergyPlan("rapl", "rapl", "RAPL at /fake")


def test_estimate_is_cpu_time_times_watts_per_core():
    windows = [EnergyWindow(0, calls=100, seconds=1.0, cpu_s=0.5)] * 2
    e = energy_result(ESTIMATE, batch=4, windows=windows, idle=None)
    assert e.method == "estimated" and e.windows == 2 and e.calls == 200
    assert e.cpu_ms_per_call == pytest.approx(5.0)
    assert e.mj_per_call == pytest.approx(50.0)  # 5 ms of CPU x 10 W
    assert e.mj_per_item == pytest.approx(12.5) and e.watts_per_core == 10.0
    assert "not a measurement" in e.formula
    assert energy_result(ESTIMATE, 4, [], None) is None
    assert energy_result(EnergyPlan("off", "off", "off"), 4, windows, None) is None


def test_rapl_subtracts_idle_power_over_the_window_time():
    windows = [
        EnergyWindow(0, 1000, 2.0, 1.9, {"package": 30.0, "dram": 4.0}),
        EnergyWindow(0, 1000, 2.0, 1.9, {"package": 34.0, "dram": 4.0}),
    ]
    idle = IdlePower({"package": 5.0, "dram": 1.0}, 2.0)
    e = energy_result(RAPL, batch=2, windows=windows, idle=idle)
    assert e.method == "rapl" and e.seconds == 4.0
    assert e.rapl["package_gross_mj_per_call"] == pytest.approx(64.0 / 2000 * 1e3)
    assert e.mj_per_call == pytest.approx((64.0 - 5.0 * 4.0) / 2000 * 1e3)
    assert e.rapl["dram_net_mj_per_call"] == pytest.approx((8.0 - 4.0) / 2000 * 1e3)
    assert e.mj_per_item == pytest.approx(e.mj_per_call / 2)


CPU = PROVIDERS.get("cpu")


def test_idle_before_and_after_are_averaged():
    a, b = IdlePower({"package": 4.0}, 1.0), IdlePower({"package": 6.0, "dram": 2.0}, 1.0)
    both = mean_idle(a, b)
    assert both.watts == {"dram": 1.0, "package": 5.0} and both.seconds == 2.0
    assert mean_idle(a, None) is a and mean_idle(None, None) is None


def _group(samples_ns: list[list[int]], raw: bool = False) -> GroupResult:
    configs = [
        config_result(f"m{i}.onnx", f"m{i}", (CPU, "fp32", 1, 2), "random", s, raw)
        for i, s in enumerate(samples_ns)
    ]
    return GroupResult(["cpu"], 1, 2, len(samples_ns[0]), 0, 1.0, "", {}, configs)


def test_summaries_keep_a_histogram_and_samples_only_when_asked():
    rng = np.random.default_rng(0)
    ns = rng.lognormal(np.log(2e5), 0.2, 400).astype(np.int64).tolist()
    kept = _group([ns], raw=True).configs[0]
    plain = _group([ns]).configs[0]
    assert plain.latencies_ms is None and len(kept.latencies_ms) == 400
    assert plain.latency == kept.latency and plain.latency_histogram == kept.latency_histogram
    assert sum(plain.latency_histogram.counts) == 400
    assert plain.latency.items_per_call == 2 and plain.batch == 2


def test_ratios_against_the_first_model():
    rng = np.random.default_rng(1)
    base = rng.lognormal(np.log(1e6), 0.1, 300)
    ns = [base.astype(np.int64).tolist(), (0.5 * base).astype(np.int64).tolist()]
    group = _group(ns)
    for config in group.configs:
        config.energy = energy_result(
            ESTIMATE, 2, [EnergyWindow(0, 10, 1.0, 0.2 if config.name == "m0" else 0.1)], None
        )
    add_ratios(group, [np.asarray(s) / 1e6 for s in ns], 500, 0, "estimate")
    assert group.configs[0].ratio is None
    ratio = group.configs[1].ratio
    assert ratio.baseline == "m0" and ratio.latency_p50_ratio == pytest.approx(0.5, rel=1e-3)
    lo, hi = ratio.latency_p50_ratio_ci95
    assert lo <= ratio.latency_p50_ratio <= hi
    assert ratio.energy_ratio == pytest.approx(0.5) and "CPU-time ratio" in ratio.energy_ratio_note


def test_energy_info_labels_each_method():
    est = energy_info(ESTIMATE, None, None, None, 1.0, 2)
    assert est["label"] == "estimated" and est["watts_per_core"] == 10.0
    assert "2 window(s)" in est["windows"] and est["unit"] == "mJ"
    idle = IdlePower({"package": 5.0}, 2.0)
    rapl = energy_info(RAPL, idle, idle, idle, 1.0, 1)
    assert rapl["label"] == "measured (RAPL)" and rapl["idle_w"] == {"package": 5.0}
    off = energy_info(EnergyPlan("off", "off", "off"), None, None, None, 1.0, 1)
    assert off["label"] == "off" and "windows" not in off and "--" not in off["formula"]


def test_order_summary_regenerates_the_recorded_order():
    from itertools import islice

    from qtool.runtimes.timing import Contender, measure_interleaved, round_orders

    raw = measure_interleaved([Contender(n, int) for n in "abc"], runs=30, warmup=4, seed=9)
    summary = order_summary(raw.order, 3, raw.warmup_rounds, 9)
    assert summary["rounds"] == 30 and sum(summary["first_counts"]) == 30
    assert summary["first_counts"] == [sum(o[0] == i for o in raw.order) for i in range(3)]
    again = eval(summary["regenerate"], {"itertools": __import__("itertools"), "qtool": qtool})
    assert again == raw.order == list(islice(round_orders(3, 9), 4, 34))
    other = order_summary(list(islice(round_orders(3, 10), 4, 34)), 3, 4, 10)
    assert other["sha256"] != summary["sha256"]
