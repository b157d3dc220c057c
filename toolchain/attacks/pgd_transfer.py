"""PGD on the surrogate's logits (cross-entropy with the true label), transferred as is: the
classic transfer baseline, which needs a surrogate whose deep layers are good."""

from __future__ import annotations

import torch

from qtool.attacks.feature import pgd
from qtool.attacks.methods import Crafted, CraftRequest
from qtool.attacks.surrogate import Surrogate


def craft(request: CraftRequest) -> Crafted:
    surrogate: Surrogate = request.surrogate
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")

    def loss(_x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(surrogate.logits(x_adv), y)

    return pgd(request, loss)
