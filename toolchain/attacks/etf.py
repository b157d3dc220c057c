"""The Error TransFormer (ETF) of Sun et al. (NeurIPS 2022), as this tool implements it.

A surrogate trained on a few samples approximates the target's shallow layers with an error
in parameter space. For a layer g, an error dW in its weights acts like a perturbation of its
input: (W + dW) z = W (z + xi) with xi = W^+ dW z. So the target's shallow features are, to first
order, the surrogate's evaluated at a shifted point, g(z + xi), and the disruption the target
sees is D(g(z(x + delta) + xi), g(z(x) + xi)) for an unknown xi. ETF crafts examples whose
disruption survives the worst such error (a min-max problem):

    max_{delta in budget}  min_{||xi|| <= r}  D( g(z(x + delta) + xi), g(z(x) + xi) )

with z the input of the feature layer, r = RADIUS ||z(x)|| per sample and D the relative squared
feature distance. Each outer PGD step first runs INNER_STEPS steps of normalised gradient
descent on xi (the error that most undoes the attack), then ascends on delta against it.
With xi = 0 this is the plain feature attack.
"""

from __future__ import annotations

import torch

from qtool.attacks.feature import pgd, relative_distance
from qtool.attacks.methods import Crafted, CraftRequest
from qtool.attacks.surrogate import Surrogate

RADIUS = 0.1  # the error's image, relative to the clean input of the feature layer
INNER_STEPS = 3


def shifted_distance(surrogate: Surrogate, x, x_adv, xi) -> torch.Tensor:
    """Per-sample disruption seen by a layer whose error acts as the input shift xi."""
    ref = surrogate.features(x, shift=xi)  # a graph only when xi needs a gradient
    return relative_distance(surrogate.features(x_adv, shift=xi), ref)


def worst_error(surrogate: Surrogate, x: torch.Tensor, x_adv: torch.Tensor, radius):
    """The feature-space error xi (within radius per sample) that most reduces the disruption."""
    x_adv = x_adv.detach()
    xi = torch.zeros_like(surrogate.feature_input(x).detach())
    view = (-1,) + (1,) * (xi.dim() - 1)
    step = 2.0 * radius / INNER_STEPS
    for _ in range(INNER_STEPS):
        xi.requires_grad_(True)
        d = shifted_distance(surrogate, x, x_adv, xi).sum()
        (grad,) = torch.autograd.grad(d, xi)
        unit = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(view)
        xi = xi.detach() - step.view(view) * unit
        norm = xi.flatten(1).norm(dim=1).clamp_min(1e-12)
        xi = xi * (radius / norm).clamp(max=1.0).view(view)
    return xi.detach()


def craft(request: CraftRequest) -> Crafted:
    surrogate: Surrogate = request.surrogate

    def loss(x: torch.Tensor, x_adv: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            radius = RADIUS * surrogate.feature_input(x).flatten(1).norm(dim=1)
        xi = worst_error(surrogate, x, x_adv, radius)
        return shifted_distance(surrogate, x, x_adv, xi).sum()

    return pgd(request, loss)
