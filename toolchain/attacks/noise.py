"""The floor: a random perturbation on the sphere of the same budget, no model involved.

An attack whose success rate does not beat this is reported as failing: its examples change
the target's answers no more often than noise of the same size does.
"""

from __future__ import annotations

import time

import numpy as np

from qtool.attacks.budget import enforce, random_in_ball
from qtool.attacks.methods import Crafted, CraftRequest


def craft(request: CraftRequest) -> Crafted:
    start = time.perf_counter()
    rng = np.random.default_rng(request.seed)
    delta = random_in_ball(request.x.shape, request.budget, rng)
    x_adv = enforce(request.x, request.x + delta, request.budget)
    return Crafted(x_adv, time.perf_counter() - start)
