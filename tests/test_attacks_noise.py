"""The floor: random perturbations on the budget's sphere, seeded, inside [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest

from qtool.attacks import noise
from qtool.attacks.budget import Budget, norms
from qtool.attacks.methods import CraftRequest


@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_noise_is_seeded_and_bounded(norm, eps):
    x = np.random.default_rng(0).random((20, 1, 8, 8)).astype(np.float32)
    y = np.zeros(20, np.int64)
    a = noise.craft(CraftRequest(x, y, Budget(eps, norm), 3)).x_adv
    b = noise.craft(CraftRequest(x, y, Budget(eps, norm), 3)).x_adv
    c = noise.craft(CraftRequest(x, y, Budget(eps, norm), 4)).x_adv
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    linf, l2 = norms(x, a)
    assert (linf if norm == "linf" else l2).max() <= eps
    assert a.min() >= 0 and a.max() <= 1
    if norm == "linf":  # pixels away from the range edges move by the full eps
        inner = (x > eps) & (x < 1 - eps)
        assert np.allclose(np.abs(a - x)[inner], eps, atol=1e-6)
