"""run_bench through its typed API: configurations, data, compact reports, provider facts."""

from __future__ import annotations

import json

import pytest
from builders import conv_model, save

from qtool.benchmarking import BenchPlan, run_bench
from qtool.data.datasets import load_dataset
from qtool.errors import QtoolError
from qtool.outputs import write_json

QUICK = dict(runs=4, warmup=0, energy="off", thread_check_s=0.05)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_api")
    return save(conv_model(0), root / "a.onnx"), save(conv_model(1), root / "b.onnx")


def test_every_configuration_in_plan_order(two_models):
    heard: list[str] = []
    plan = BenchPlan(batches=[1, 3], threads=[1, 2], providers=["CPUExecutionProvider"], **QUICK)
    result = run_bench(list(two_models), plan, on_group=heard.append)
    keys = [(g.providers, g.threads, g.batch) for g in result.groups]
    assert keys == [(["cpu"], t, b) for t in (1, 2) for b in (1, 3)]
    assert heard[1] == "cpu, 1 thread(s), batch 3"
    for group in result.groups:
        assert [c.name for c in group.configs] == ["a.onnx", "b.onnx"]
        assert all(c.latency.runs == 4 and c.threads == group.threads for c in group.configs)
        assert group.configs[1].ratio.baseline == "a.onnx"
        assert all(c.provider == "cpu" and c.precision == "fp32" for c in group.configs)
        assert all(c.ort_provider == "CPUExecutionProvider" for c in group.configs)
        assert all(c.provider_ratio is None for c in group.configs)  # one provider
        for c in group.configs:  # the thread count is measured, not assumed
            assert c.threads_used["threads"] == group.threads and c.threads_used["pinned"]
    assert result.settings["providers"] == ["cpu"] and result.settings["precision"] == "fp32"
    assert result.providers == [
        {
            "name": "cpu",
            "ort_name": "CPUExecutionProvider",
            "source": "built in",
            "options": {},
            "threads_pinned_by": "session intra_op_num_threads",
            "precision": result.providers[0]["precision"],
            "precision_mode": "fp32",
        }
    ]
    assert result.failures == [] and result.accuracy == []


def test_a_loaded_dataset_feeds_the_models(two_models):
    digits = load_dataset("digits:val")
    result = run_bench([two_models[0]], BenchPlan(**QUICK), data=digits)
    assert result.settings["data"] == digits.spec
    assert "data digits" in result.groups[0].configs[0].inputs


def test_the_report_is_small_without_raw_samples(two_models, tmp_path):
    plan = BenchPlan(seconds=0.3, warmup=0, energy="off")
    result = run_bench(list(two_models), plan)
    rounds = result.groups[0].rounds
    assert rounds > 500  # many samples behind each summary
    out = write_json(tmp_path / "r.json", result)
    payload = json.loads(out.read_text())
    assert out.stat().st_size < 20_000
    config = payload["groups"][0]["configs"][1]
    assert config["latencies_ms"] is None and sum(config["latency_histogram"]["counts"]) == rounds


def test_bad_plans_and_models_fail_before_any_measurement(two_models, tmp_path):
    with pytest.raises(QtoolError, match="not both") as info:
        run_bench(list(two_models), BenchPlan(runs=3, seconds=1.0))
    assert info.value.param == "runs"
    with pytest.raises(QtoolError) as info:
        run_bench([], BenchPlan(**QUICK))
    assert info.value.param == "models"
    with pytest.raises(QtoolError, match="out of scope") as info:
        run_bench(list(two_models), BenchPlan(providers=["cuda"], **QUICK))
    assert info.value.param == "providers"
    with pytest.raises(QtoolError, match="missing.onnx"):
        run_bench([tmp_path / "missing.onnx"], BenchPlan(**QUICK))
