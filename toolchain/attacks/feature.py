"""Shallow-layer feature disruption: push the surrogate's shallow features of x + delta as far
from those of x as the budget allows (projected gradient ascent on the relative squared
distance). Shallow features are what a few samples train well and what different networks
trained on the same kind of images share, which is why the perturbation transfers.

`pgd` is the loop shared by the surrogate-based methods (feature, etf, pgd-transfer).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from qtool.attacks.budget import Budget, enforce, random_in_ball, torch_project, torch_step
from qtool.attacks.methods import Crafted, CraftRequest
from qtool.attacks.surrogate import Surrogate, single_thread

CHUNK = 128  # samples per gradient batch: bounds memory for larger images
STEP_FACTOR = 2.5  # step size = 2.5 eps / steps (Madry et al.): can cross the ball in 40 % of them

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def relative_distance(f: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per sample ||f - ref||^2 / ||ref||^2: comparable across samples and layers."""
    num = (f - ref).flatten(1).pow(2).sum(1)
    return num / ref.flatten(1).pow(2).sum(1).clamp_min(1e-12)


def pgd(request: CraftRequest, loss_fn: LossFn) -> Crafted:
    """Maximise loss_fn(x, x + delta, y) (summed per sample) inside the budget, from a seeded
    random start; returns examples that respect the budget exactly."""
    start = time.perf_counter()
    budget: Budget = request.budget
    rng = np.random.default_rng(request.seed)
    init = 0.5 * random_in_ball(request.x.shape, budget, rng)
    alpha = STEP_FACTOR * budget.eps / request.steps
    out = np.empty_like(request.x)
    with single_thread():
        for lo in range(0, len(request.x), CHUNK):
            x = torch.from_numpy(request.x[lo : lo + CHUNK])
            y = torch.from_numpy(np.asarray(request.y[lo : lo + CHUNK], np.int64))
            delta = torch_project(x, torch.from_numpy(init[lo : lo + CHUNK]).float(), budget)
            for _ in range(request.steps):
                delta.requires_grad_(True)
                loss = loss_fn(x, x + delta, y)
                (grad,) = torch.autograd.grad(loss, delta)
                delta = torch_project(x, torch_step(delta.detach(), grad, alpha, budget), budget)
            out[lo : lo + CHUNK] = (x + delta).detach().numpy()
    return Crafted(enforce(request.x, out, budget), time.perf_counter() - start)


def craft(request: CraftRequest) -> Crafted:
    surrogate: Surrogate = request.surrogate

    def loss(x: torch.Tensor, x_adv: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ref = surrogate.features(x)
        return relative_distance(surrogate.features(x_adv), ref).sum()

    return pgd(request, loss)
