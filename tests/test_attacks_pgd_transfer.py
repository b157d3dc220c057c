"""PGD on the surrogate's logits, transferred: with the whole train split it is the strongest
transfer attack on digits, and it stays in the budget."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from attack_helpers import BIG_EPS, digits_test, surrogate  # noqa: E402

from qtool.attacks import pgd_transfer  # noqa: E402
from qtool.attacks.budget import Budget, norms  # noqa: E402
from qtool.attacks.methods import METHODS, CraftRequest  # noqa: E402
from qtool.attacks.target import load_target  # noqa: E402


def test_pgd_transfer_beats_noise(zoo_models):
    x, y = digits_test()
    budget = Budget(BIG_EPS)
    x_adv = pgd_transfer.craft(CraftRequest(x, y, budget, 0, surrogate=surrogate(10, 0))).x_adv
    noisy = METHODS.get("noise").craft(CraftRequest(x, y, budget, 0)).x_adv
    assert norms(x, x_adv)[0].max() <= BIG_EPS
    target = load_target(zoo_models["cnn"])
    ok = target.predict(x) == y
    attack = np.mean(target.predict(x_adv)[ok] != y[ok])
    floor = np.mean(target.predict(noisy)[ok] != y[ok])
    assert attack > floor + 0.2, (attack, floor)
