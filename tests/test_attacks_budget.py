"""The budget holds exactly on the float32 arrays that are evaluated and saved."""

from __future__ import annotations

import numpy as np
import pytest

from qtool.attacks.budget import Budget, enforce, norms, random_in_ball
from qtool.errors import QtoolError


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("eps", [8 / 255, 0.1, 1 / 3])
def test_enforce_brings_any_candidate_inside_ball_and_pixel_range(norm, eps):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 17, size=(64, 1, 8, 8)).astype(np.float32) / 16  # digits-like grid
    wild = x + rng.normal(0, 1, size=x.shape).astype(np.float32)
    out = enforce(x, wild, Budget(eps, norm))
    linf, l2 = norms(x, out)
    assert out.dtype == np.float32
    assert (linf if norm == "linf" else l2).max() <= eps  # exactly, in float64 on float32 values
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_enforce_keeps_a_candidate_already_inside():
    x = np.full((2, 1, 4, 4), 0.5, np.float32)
    inside = x + np.float32(0.01)
    assert np.array_equal(enforce(x, inside, Budget(8 / 255)), inside)


def test_rounding_overshoot_is_stepped_back():
    # x + eps rounds up in float32 for this x: the stored difference would exceed eps by an ulp
    eps = 8 / 255
    x = np.array([[[[0.3]]]], np.float32)
    candidate = np.array([[[[np.float32(0.3) + np.float32(eps)]]]], np.float32)
    out = enforce(x, candidate, Budget(eps))
    assert norms(x, out)[0].max() <= eps


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_in_ball_lies_on_the_sphere(norm):
    budget = Budget(0.2, norm)
    d = random_in_ball((10, 3, 5, 5), budget, np.random.default_rng(1))
    flat = d.reshape(10, -1)
    size = np.abs(flat).max(1) if norm == "linf" else np.sqrt((flat**2).sum(1))
    assert np.allclose(size, 0.2)


@pytest.mark.parametrize(
    "eps,norm,param",
    [(0, "linf", "eps"), (-1, "l2", "eps"), (1.5, "linf", "eps"), (0.1, "l1", "norm")],
)
def test_bad_budgets_are_refused_naming_the_parameter(eps, norm, param):
    with pytest.raises(QtoolError) as err:
        Budget(eps, norm)
    assert err.value.param == param
