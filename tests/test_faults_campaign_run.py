"""Campaigns: plans checked, trials restore the bytes, results independent of the executor,
one manifest evaluated in memory as ONNX Runtime scores the written file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from flip_models import digits_mlp, quantized

from qtool.data.datasets import load_dataset
from qtool.errors import QtoolError
from qtool.faults.campaign import CampaignPlan, evaluate_manifest, run_campaign
from qtool.faults.campaign.executor import in_process
from qtool.faults.campaign.trials import prepare_model, run_trial
from qtool.faults.storage import FlipSettings, Selection, inject
from qtool.modelfile.buffers import write_model_files
from qtool.runtimes import make_session


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("campaign_run")
    mlp = digits_mlp(d / "mlp.onnx", hidden=16)
    return [mlp, quantized(mlp, d / "mlp.int8.onnx", "qdq")]


def test_plan_is_checked_and_normalised():
    assert CampaignPlan(budgets=[5, 1, 5]).budgets == (1, 5)
    for kwargs, param in [({"budgets": ()}, "bits"), ({"budgets": (-1,)}, "bits"),
                          ({"trials": 0}, "trials"), ({"workers": 0}, "workers")]:  # fmt: skip
        with pytest.raises(QtoolError) as caught:
            CampaignPlan(**kwargs)
        assert caught.value.param == param


def test_a_trial_restores_the_bytes_and_is_seeded(models):
    data = load_dataset("digits")
    model = prepare_model(models[1], data, Selection(fault="reset"))
    before = bytes(model.buf)
    a = run_trial(model, 0, data.y, 40, trial=3, seed=1)
    assert bytes(model.buf) == before
    assert a == run_trial(model, 0, data.y, 40, trial=3, seed=1)
    others = {run_trial(model, 0, data.y, 40, trial=t, seed=1).accuracy for t in range(4)}
    assert len(others) > 1  # other trials draw other bits


def test_results_do_not_depend_on_the_executor(models):
    plan = CampaignPlan(budgets=(2, 16), trials=3, seed=5)
    reference = run_campaign(models, "digits", plan, show_progress=False)

    def backwards(job, prepared, y, tasks):  # another executor: the tasks in reverse order
        return in_process(job, prepared, y, list(reversed(tasks)))

    other = run_campaign(models, "digits", plan, show_progress=False, executor=backwards)
    assert other.trial_results == reference.trial_results and other.stats == reference.stats
    assert [s.bits for s in reference.stats] == [2, 16, 2, 16]
    assert reference.targets == "weights" and reference.positions == "any"


def test_budget_larger_than_the_space_is_refused(models):
    plan = CampaignPlan(budgets=(10**7,), trials=1)
    with pytest.raises(QtoolError, match="eligible bits") as caught:
        run_campaign(models[:1], "digits", plan, show_progress=False)
    assert caught.value.param == "bits"
    with pytest.raises(QtoolError, match="give at least one model"):
        run_campaign([], "digits", replace(plan, budgets=(1,)), show_progress=False)


def test_evaluate_manifest_matches_the_written_file(models, tmp_path):
    src = models[1]
    injection = inject(src, FlipSettings(bits=30, seed=2, positions=("msb",)))
    out = write_model_files(injection.files, tmp_path / "flipped.onnx")
    ev = evaluate_manifest(src, injection.manifest, "digits")
    test = load_dataset("digits")
    session = make_session(out, opt_level="all")
    name = session.get_inputs()[0].name
    scores = session.run(None, {name: test.x.reshape(len(test.x), -1)})[0]
    assert ev.flipped_accuracy == pytest.approx(float((scores.argmax(1) == test.y).mean()))
    assert ev.samples == len(test.y) and 0 <= ev.sdc_rate <= 1
    assert np.isclose(ev.clean_accuracy, ev.clean_correct / ev.samples)


def test_incremental_and_full_evaluation_give_the_same_campaign(models):
    plan = CampaignPlan(budgets=(1, 6), trials=4, seed=3, targets=("weights", "biases"))
    fast = run_campaign(models, "digits", plan, show_progress=False)
    slow = run_campaign(models, "digits", replace(plan, incremental=False), show_progress=False)
    assert fast.trial_results == slow.trial_results and fast.stats == slow.stats
    assert [m.evaluation.mode for m in fast.models] == ["incremental", "incremental"]
    assert [m.evaluation.mode for m in slow.models] == ["full", "full"]
    assert all(m.evaluation.cache_mb > 0 for m in fast.models)


def test_faulted_models_onnx_runtime_refuses_fail_as_the_whole_model_does(zoo_models):
    """Flipped shape tensors (targets 'others') break Reshape/ReduceMean: the trial's error
    is the whole model's, word for word."""
    plan = CampaignPlan(budgets=(1, 3), trials=6, seed=0, targets=("others",))
    fast = run_campaign([zoo_models["cnn"]], "digits", plan, show_progress=False)
    slow = run_campaign(
        [zoo_models["cnn"]], "digits", replace(plan, incremental=False), show_progress=False
    )
    assert fast.trial_results == slow.trial_results
    assert fast.models[0].evaluation.mode == "incremental"
    assert any(r.error for r in fast.trial_results)
