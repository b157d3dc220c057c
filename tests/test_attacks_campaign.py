"""A whole run: summaries beside the floor, a JSON report, examples that eval reads back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from attack_helpers import quick_settings

from qtool.attacks.campaign import run_attack, save_examples
from qtool.data.datasets import load_dataset
from qtool.modelfile.load import sha256_file

pytest.importorskip("torch")


def test_run_reports_success_beside_noise_and_saves_examples(zoo_models, tmp_path):
    path = zoo_models["cnn"]
    s = quick_settings([path], methods=("feature",))
    report, x_adv = run_attack(s, keep_examples=True)
    by_method = {r.method: r for r in report.summaries}
    attack, floor = by_method["feature"], by_method["noise"]
    assert attack.beats_floor and floor.beats_floor is None
    assert attack.success_rate > attack.noise_success_rate + 0.2
    assert attack.noise_success_rate == floor.success_rate
    assert attack.success.low <= attack.success_rate <= attack.success.high
    assert report.model_sha256 == {str(path): sha256_file(path)}
    payload = json.loads(json.dumps(report.to_dict()))
    assert {"success_rate", "noise_success_rate"} <= set(payload["results"][0])

    out = save_examples(tmp_path / "adv.npz", x_adv, s, report.examples)
    back = load_dataset(f"npz:{out}")
    assert back.split == "test" and np.array_equal(back.x, x_adv)  # float32: lossless
    first = report.units[0]
    assert report.examples["accuracy_under_attack"] == first.adv_correct / first.attacked
