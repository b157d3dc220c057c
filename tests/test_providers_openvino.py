"""OpenVINO through onnxruntime's plugin interface, for real, where its plugin offers a CPU
device (an Intel CPU with `pip install 'qtool[openvino]'`). Elsewhere every test here skips
with the reason qtool derives from what the plugin reports (e.g. no CPU device on an AMD CPU:
the plugin enumerates Intel devices only)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from builders import conv_model, digits_linear_weights, linear_image_model, save

from qtool.benchmarking import BenchPlan, run_bench
from qtool.data.datasets import load_dataset
from qtool.evaluation.providers import compare_providers
from qtool.runtimes.providers import PROVIDERS
from qtool.runtimes.session import make_session
from qtool.runtimes.threads import measure_thread_use, pinning_check

OPENVINO = PROVIDERS.get("openvino")
REASON = OPENVINO.unusable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"openvino: {REASON}")


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    return save(
        linear_image_model(*digits_linear_weights()), tmp_path_factory.mktemp("ov") / "l.onnx"
    )


def test_openvino_session_runs_pinned_to_one_thread():
    session = make_session(conv_model(0), ["openvino"], threads=1, spinning=False)
    assert session.get_providers()[0] == "OpenVINOExecutionProvider"
    x = np.random.default_rng(0).random((32, 1, 8, 8), dtype=np.float32)
    expected = make_session(conv_model(0), ["cpu"], threads=1).run(None, {"x": x})[0]
    got = session.run(None, {"x": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)  # f32 pinned
    use = measure_thread_use(lambda: session.run(None, {"x": x}), seconds=0.3)
    check = pinning_check(use, 1)
    assert check["pinned"] is True, check  # INFERENCE_NUM_THREADS=1 really holds


def test_openvino_accuracy_against_the_cpu_provider(digits_model):
    test = load_dataset("digits:test")
    rows = compare_providers(digits_model, [OPENVINO], test, precision="fp32", max_accuracy_drop=0)
    (row,) = rows
    assert row.provider == "openvino" and row.top1_agreement_with_cpu >= 0.99
    assert row.max_abs_score_diff_vs_cpu < 1e-3  # f32 kernels, not bf16
    auto = compare_providers(digits_model, [OPENVINO], test, precision="auto")[0]
    assert auto.precision == "auto" and 0 <= auto.accuracy <= 1  # recorded, whatever it ran at


def test_bench_interleaves_cpu_and_openvino(digits_model, tmp_path):
    plan = BenchPlan(
        providers=["cpu", "openvino"], batches=[1], runs=20, warmup=2, energy="off",
        thread_check_s=0.1,
    )  # fmt: skip
    result = run_bench([digits_model], plan, data="digits")
    (group,) = result.groups
    assert [c.provider for c in group.configs] == ["cpu", "openvino"]
    ov = group.configs[1]
    assert ov.provider_ratio is not None and ov.provider_ratio.baseline == "l.onnx · cpu"
    assert ov.threads_used["pinned"] is True
    assert [a.provider for a in result.accuracy] == ["cpu", "openvino"]
    report = tmp_path / "r.json"
    from qtool.outputs import write_json

    payload = json.loads(write_json(report, result).read_text())
    assert payload["providers"][1]["plugin"]["package"] == "onnxruntime-ep-openvino"


def test_a_campaign_runs_its_trials_on_openvino(digits_model):
    from qtool.faults.campaign import CampaignPlan, run_campaign

    plan = CampaignPlan(budgets=(1, 4), trials=3, providers=("cpu", "openvino"))
    result = run_campaign([digits_model], "digits", plan, show_progress=False)
    assert [m.provider for m in result.models] == ["cpu", "openvino"]
    clean = [m.clean_accuracy for m in result.models]
    assert abs(clean[0] - clean[1]) <= 0.01
