"""The Error TransFormer (ETF) attack of Sun et al. (NeurIPS 2022), after the authors' ETF_PGD.

The surrogate (trained without labels: `etf-i` instance discrimination, `etf-c` contrastive)
gives shallow features g (its first stage). Each attacked image s gets a guide image t of
another class (seeded choice among the attacked images; the authors pair a batch with itself
in reverse order). Over the views V of `augment.attack_views`, the criterion is

    L(s, t, a) = log( sum_v cos(g(a_v), g(t_v)) / mean_v cos(g(a_v), g(s_v)) )

and the adversarial image a = s + delta ascends it: its shallow features move towards the
guide's and away from its own. The error transformer: the surrogate's error in parameter
space is modelled as small worst-case perturbations of the three inputs. Every `skip` steps
they are recomputed as the gradient directions that most lower L (rho for a, rho * RATIO for
s and t; normalised L2 for an L2 budget, the sign for L-inf), and delta ascends L evaluated at
(s - p_s, t - p_t, a - p_a): examples that keep working when the features are a little off.
Sign steps (L-inf) or normalised steps (L2) of 2.5 eps / steps, from delta = 0 as the authors
start, each projected back into the budget and [0, 1].
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from qtool.attacks.augment import attack_views, view_count
from qtool.attacks.budget import Budget, enforce, torch_project, torch_step
from qtool.attacks.feature import CHUNK, STEP_FACTOR
from qtool.attacks.methods import Crafted, CraftRequest
from qtool.attacks.surrogate import Surrogate, single_thread

# Size of the worst-case perturbation of the adversarial input, as a fraction of eps: the
# authors' rho = 1e-4 at eps = 0.1. Larger values lowered success here (README, benchmarks).
RHO = 1e-3
RATIO = 0.1  # of the source and guide inputs, relative to rho (the authors' ratio)
REFRESHES = 10  # the perturbations are recomputed every steps / REFRESHES steps (20 of 200)
TINY = 1e-12


def guides(y: np.ndarray, seed: int) -> np.ndarray:
    """For every image, the index of a guide of another class (any other image when all share
    one class; itself when it is alone), drawn from a generator seeded with `seed`."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    out = np.arange(len(y))
    for i in range(len(y)):
        pool = np.flatnonzero(y != y[i])
        if not len(pool):
            pool = np.flatnonzero(np.arange(len(y)) != i)
        if len(pool):
            out[i] = rng.choice(pool)
    return out


def view_features(surrogate: Surrogate, x: torch.Tensor) -> torch.Tensor:
    """(N, V, D): the shallow features of every view of every image."""
    return surrogate.features(attack_views(x)).reshape(len(x), view_count(x.shape[1]), -1)


def criterion(f_source: torch.Tensor, f_guide: torch.Tensor, f_adv: torch.Tensor) -> torch.Tensor:
    """Per image log(sum_v cos(adv, guide) / mean_v cos(adv, source)). Shallow features after a
    ReLU make both cosines >= 0; they are kept above TINY so the log stays finite."""
    towards = F.cosine_similarity(f_adv, f_guide, dim=2, eps=TINY).sum(1)
    away = F.cosine_similarity(f_adv, f_source, dim=2, eps=TINY).mean(1)
    return torch.log(towards.clamp_min(TINY)) - torch.log(away.clamp_min(TINY))


def direction(grad: torch.Tensor, budget: Budget) -> torch.Tensor:
    """Unit steepest-ascent direction in the budget's norm: the sign, or grad / ||grad||_2."""
    if budget.norm == "linf":
        return grad.sign()
    return grad / grad.flatten(1).norm(dim=1).clamp_min(TINY).view(-1, *[1] * (grad.dim() - 1))


def error_transform(surrogate: Surrogate, s, t, a, budget: Budget, rho: float):
    """The worst-case input perturbations (p_s, p_t, p_a): each a step of size rho (a) or
    rho * RATIO (s, t) along the gradient of L at (s, t, a), to be subtracted (L goes down).
    The three inputs go through the surrogate as one batch (it is in eval mode)."""
    stacked = torch.cat([s, t, a]).requires_grad_(True)
    loss = criterion(*view_features(surrogate, stacked).chunk(3)).sum()
    (grad,) = torch.autograd.grad(loss, stacked)
    sizes = (rho * RATIO, rho * RATIO, rho)
    return [size * direction(g, budget) for size, g in zip(sizes, grad.chunk(3), strict=True)]


def attack_chunk(surrogate: Surrogate, s, t, budget: Budget, steps: int) -> torch.Tensor:
    """The adversarial images of one chunk of sources s with their guides t."""
    alpha = STEP_FACTOR * budget.eps / steps
    skip = max(1, steps // REFRESHES)
    delta = torch.zeros_like(s)
    for i in range(steps):
        if i % skip == 0:
            p_s, p_t, p_a = error_transform(surrogate, s, t, s + delta, budget, RHO * budget.eps)
            with torch.no_grad():
                f_s, f_t = view_features(surrogate, torch.cat([s - p_s, t - p_t])).chunk(2)
        delta.requires_grad_(True)
        loss = criterion(f_s, f_t, view_features(surrogate, s + delta - p_a)).sum()
        (grad,) = torch.autograd.grad(loss, delta)
        delta = torch_project(s, torch_step(delta.detach(), grad, alpha, budget), budget)
    return (s + delta).detach()


def craft(request: CraftRequest) -> Crafted:
    start = time.perf_counter()
    surrogate: Surrogate = request.surrogate
    guide = guides(request.y, request.seed)
    out = np.empty_like(request.x)
    with single_thread():
        for lo in range(0, len(request.x), CHUNK):
            s = torch.from_numpy(request.x[lo : lo + CHUNK])
            t = torch.from_numpy(request.x[guide[lo : lo + CHUNK]])
            out[lo : lo + CHUNK] = attack_chunk(surrogate, s, t, request.budget, request.steps)
    return Crafted(enforce(request.x, out, request.budget), time.perf_counter() - start)
