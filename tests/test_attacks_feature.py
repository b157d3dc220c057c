"""Shallow-feature disruption: a real attack crafted on a surrogate trained on 10 images per
class transfers to a real digits CNN in ONNX Runtime far above the noise floor."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from attack_helpers import BIG_EPS, digits_test, surrogate  # noqa: E402

from qtool.attacks.budget import Budget, norms  # noqa: E402
from qtool.attacks.methods import METHODS, CraftRequest  # noqa: E402
from qtool.attacks.target import load_target  # noqa: E402


def success(target, x, y, x_adv) -> float:
    ok = target.predict(x) == y
    return float(np.mean(target.predict(x_adv)[ok] != y[ok]))


def craft(method: str, budget: Budget, seed: int = 0):
    x, y = digits_test()
    request = CraftRequest(x, y, budget, seed, surrogate=surrogate(10, 0))
    return x, y, METHODS.get(method).craft(request).x_adv


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_feature_attack_beats_noise_and_respects_the_budget(zoo_models, norm):
    eps = BIG_EPS if norm == "linf" else 1.5
    budget = Budget(eps, norm)
    target = load_target(zoo_models["cnn"])
    x, y, x_adv = craft("feature", budget)
    _, _, noisy = craft("noise", budget)
    linf, l2 = norms(x, x_adv)
    assert (linf if norm == "linf" else l2).max() <= eps
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    attack, floor = success(target, x, y, x_adv), success(target, x, y, noisy)
    assert attack > floor + 0.2, (attack, floor)


def test_same_seed_same_examples():
    a = craft("feature", Budget(0.1))[2]
    b = craft("feature", Budget(0.1))[2]
    c = craft("feature", Budget(0.1), seed=1)[2]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
