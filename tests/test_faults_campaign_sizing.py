"""--trials auto: Leveugle et al.'s sample size, fixed rounds, and which rule stopped a budget."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from flip_models import digits_mlp, quantized

from qtool.errors import QtoolError
from qtool.faults.campaign import CampaignPlan, run_campaign
from qtool.faults.campaign.sizing import leveugle_trials, normal_quantile, population, rounds


def test_leveugle_sample_size():
    assert normal_quantile(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert normal_quantile(0.99) == pytest.approx(2.575829, abs=1e-6)
    big = population(11_000_000 * 8, 10)  # bit sets of a ResNet-18-size INT8 model
    assert leveugle_trials(big, 0.05, 0.95) == 385  # t^2 p(1-p) / e^2 = 384.1 for N -> inf
    assert leveugle_trials(big, 0.01, 0.95) == 9604
    assert leveugle_trials(10_000, 0.05, 0.95) == 370  # the finite-population formula
    assert leveugle_trials(1, 0.01, 0.99) == 1  # budget 0: one configuration, one trial
    n, e, t = 2_000, 0.03, normal_quantile(0.9)
    exact = n * t * t * 0.25 / (e * e * (n - 1) + t * t * 0.25)  # the paper's other form
    assert leveugle_trials(n, e, 0.9) == math.ceil(exact)
    assert population(100, 0) == 1 and population(100, 2) == 4950


def test_rounds_are_fixed_and_capped():
    assert rounds(385) == [32, 48, 72, 108, 162, 243, 365, 385]
    assert rounds(11) == [11] and rounds(32) == [32]


def test_plan_checks_the_auto_options():
    for kwargs, param in [({}, "margin"), ({"margin": 0.0}, "margin"),
                          ({"margin": 0.01, "confidence": 1.0}, "confidence"),
                          ({"margin": 0.01, "max_trials": 0}, "max_trials")]:  # fmt: skip
        with pytest.raises(QtoolError) as caught:
            CampaignPlan(trials="auto", **kwargs)
        assert caught.value.param == param
    with pytest.raises(QtoolError, match="or auto"):
        CampaignPlan(trials="many")


@pytest.fixture(scope="module")
def int8_mlp(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sizing")
    return quantized(digits_mlp(d / "mlp.onnx", hidden=16), d / "mlp.int8.onnx", "qdq")


def _sizing(model: Path, budgets, **kw):
    plan = CampaignPlan(budgets=budgets, trials="auto", seed=2, **kw)
    result = run_campaign([model], "digits", plan, show_progress=False)
    return result, {s.bits: s for s in result.sizing["budgets"]}


def test_each_rule_stops_the_budgets_it_should(int8_mlp):
    result, by_bits = _sizing(int8_mlp, (0, 1), margin=0.05)
    assert (by_bits[0].stopped_by, by_bits[0].trials) == ("leveugle", 1)
    one = by_bits[1]  # one flipped bit barely moves accuracy: the interval is narrow at once
    eligible = result.models[0].eligible_bits  # N = eligible bits at budget 1: the exact formula
    assert one.leveugle_trials == leveugle_trials(eligible, 0.05, 0.95) > 32
    assert (one.stopped_by, one.trials) == ("bootstrap", 32)
    stats = next(s for s in result.stats if s.bits == 1)
    assert stats.trials == 32 and one.halfwidth <= 0.05
    assert one.halfwidth == pytest.approx((stats.ci95_high - stats.ci95_low) / 2)  # same draw
    assert result.trials == "auto" and len(result.trial_results) == 33

    _, by_bits = _sizing(int8_mlp, (4,), margin=0.3)  # n = 11 < the first round
    assert (by_bits[4].stopped_by, by_bits[4].trials) == ("leveugle", 11)
    _, by_bits = _sizing(int8_mlp, (64,), margin=1e-6, max_trials=40)
    assert (by_bits[64].stopped_by, by_bits[64].trials) == ("limit", 40)


def test_a_worker_prepares_a_model_from_bytes_alone(int8_mlp, tmp_path):
    """What a cluster worker does: the model's bytes as the client read them, no file."""
    from flip_models import external

    from qtool.data.datasets import load_dataset
    from qtool.faults.campaign.trials import prepare_model
    from qtool.faults.storage import Selection
    from qtool.modelfile.buffers import read_model_files

    src = external(int8_mlp, tmp_path / "ext")
    data = load_dataset("digits")
    on_disk = prepare_model(src, data, Selection())
    files = read_model_files(src)
    for f in (tmp_path / "ext").iterdir():
        f.unlink()
    sent = prepare_model(src, data, Selection(), files=files)
    assert (sent.sha256, sent.key, sent.space.total) == (
        on_disk.sha256,
        on_disk.key,
        on_disk.space.total,
    )
    assert bytes(sent.buf) == bytes(on_disk.buf)
    assert (sent.clean.pred == on_disk.clean.pred).all()
