"""How a surrogate learns from the attacker's images: one registry entry per training task.

- `supervised`: cross-entropy with the class labels (feature, pgd-transfer), random one-pixel
  shifts as the only augmentation.
- `instance` (ETF-I of Sun et al.): every attacker image is its own class; cross-entropy over
  two random views of each image. No class label is used.
- `contrastive` (ETF-C): SimCLR's NT-Xent on two random views: each first view must pick its
  own second view among all other views of the batch (temperature 0.5). No label either.

The label-free tasks put a head on the network (ReLU, then a linear layer to one logit per
image for `instance`, to a 128-d unit vector for `contrastive`), as the authors' code puts an
MLP head on its backbone; the zoo network is then built with EMBED outputs. Only its shallow
layer is used by ETF. Imported only with torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from qtool.attacks.augment import random_views
from qtool.registry import Registry

EMBED = 128  # outputs of the network under a label-free head
TEMPERATURE = 0.5  # NT-Xent (the authors' training script's default)


@dataclass
class Batch:
    """What a training step draws from: the attacker's images, labels, batch size, generator."""

    x: torch.Tensor
    y: torch.Tensor
    size: int
    gen: torch.Generator


@dataclass(frozen=True)
class Task:
    name: str
    summary: str
    outputs: Callable[[int], int | None]  # classes -> network outputs (None: as built)
    head: Callable[[int, int], nn.Module | None]  # (network outputs, images) -> head
    loss: Callable[[nn.Module, Batch], torch.Tensor]
    accuracy: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], float]


class Embedding(nn.Module):
    """ReLU, linear, unit length: the contrastive projection head."""

    def __init__(self, inputs: int, dim: int = EMBED):
        super().__init__()
        self.proj = nn.Linear(inputs, dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(F.relu(z)), dim=1)


def _supervised_loss(model: nn.Module, b: Batch) -> torch.Tensor:
    """A batch drawn with replacement, shifted by one random offset of up to one pixel."""
    idx = torch.randint(0, len(b.x), (b.size,), generator=b.gen)
    dy, dx = (int(v) for v in torch.randint(0, 3, (2,), generator=b.gen))
    h, w = b.x.shape[-2:]
    xb = F.pad(b.x[idx], (1, 1, 1, 1))[:, :, dy : dy + h, dx : dx + w]
    return F.cross_entropy(model(xb), b.y[idx])


def _two_views(b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct images (a seeded subset) and two random views of each, stacked."""
    idx = torch.randperm(len(b.x), generator=b.gen)[: b.size]
    xb = b.x[idx]
    return idx, torch.cat([random_views(xb, b.gen), random_views(xb, b.gen)])


def _instance_loss(model: nn.Module, b: Batch) -> torch.Tensor:
    idx, views = _two_views(b)
    return F.cross_entropy(model(views), torch.cat([idx, idx]))


def _contrastive_loss(model: nn.Module, b: Batch) -> torch.Tensor:
    idx, views = _two_views(b)
    z = model(views)
    n = len(idx)
    logits = z[:n] @ z.T / TEMPERATURE
    logits[:, :n] = logits[:, :n].masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, torch.arange(n, 2 * n))


@torch.no_grad()
def _class_accuracy(model, x, y, _gen) -> float:
    return float((model(x).argmax(1) == y).float().mean())


@torch.no_grad()
def _instance_accuracy(model, x, _y, gen) -> float:
    """Fraction of images whose fresh random view the network names as that image."""
    return float((model(random_views(x, gen)).argmax(1) == torch.arange(len(x))).float().mean())


@torch.no_grad()
def _retrieval_accuracy(model, x, _y, gen) -> float:
    """Fraction of images whose fresh random view lies closest to that image's embedding."""
    sims = model(random_views(x, gen)) @ model(x).T
    return float((sims.argmax(1) == torch.arange(len(x))).float().mean())


TASKS: Registry[Task] = Registry("surrogate training task")
TASKS.add(
    "supervised",
    Task(
        "supervised",
        "cross-entropy with the class labels",
        outputs=lambda classes: classes,
        head=lambda _outputs, _images: None,
        loss=_supervised_loss,
        accuracy=_class_accuracy,
    ),
)
TASKS.add(
    "instance",
    Task(
        "instance",
        "instance discrimination: each image its own class (ETF-I)",
        outputs=lambda _classes: EMBED,
        head=lambda outputs, images: nn.Sequential(nn.ReLU(), nn.Linear(outputs, images)),
        loss=_instance_loss,
        accuracy=_instance_accuracy,
    ),
)
TASKS.add(
    "contrastive",
    Task(
        "contrastive",
        "SimCLR contrastive learning on two random views (ETF-C)",
        outputs=lambda _classes: EMBED,
        head=lambda outputs, _images: Embedding(outputs),
        loss=_contrastive_loss,
        accuracy=_retrieval_accuracy,
    ),
)
