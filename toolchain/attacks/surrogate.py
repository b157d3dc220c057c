"""The attacker's surrogate: a network trained on the attacker's K samples per class only.

Imported only by the methods that need torch. Training is a fixed number of optimiser steps
(with K = 1 an epoch is a single batch, so an epoch-based recipe would barely move), with
random one-pixel translations as the only augmentation, deterministic for a seed on one
thread. The surrogate normalises its input itself, so attacks work in pixel space [0, 1],
the space the target's images live in before its own preprocessing.

Shallow features are read with forward hooks on one module (`feature_layer`); the forward pass
stops there, so deeper layers, which few samples train poorly, play no part in a feature attack.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from qtool.attacks.knowledge import Knowledge
from qtool.attacks.settings import SurrogateSpec
from qtool.errors import QtoolError

MIN_STD = 1e-6
THREADS = 1


class _Stop(Exception):
    """Raised by the feature hook to end the forward pass at the feature layer."""


class Normalized(nn.Module):
    """`net` applied to (x - mean) / std, per channel: the attacker's own preprocessing."""

    def __init__(self, net: nn.Module, mean: np.ndarray, std: np.ndarray):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


@dataclass
class Surrogate:
    model: Normalized
    feature_layer: str
    train_accuracy: float
    seconds: float
    k_label: str
    seed: int

    @property
    def feature_module(self) -> nn.Module:
        return dict(self.model.net.named_modules())[self.feature_layer]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def features(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        """Output of the feature layer; `shift` is added to that layer's input first."""
        out: dict[str, torch.Tensor] = {}

        def pre(_module, inputs):
            return (inputs[0] + shift, *inputs[1:])

        def post(_module, _inputs, output):
            out["f"] = output
            raise _Stop

        module = self.feature_module
        handles = [module.register_forward_hook(post)]
        if shift is not None:
            handles.append(module.register_forward_pre_hook(pre))
        try:
            self.model(x)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        return out["f"]

    def feature_input(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the feature layer (where ETF places the image of the parameter error)."""
        seen: dict[str, torch.Tensor] = {}

        def pre(_module, inputs):
            seen["z"] = inputs[0]
            raise _Stop

        handle = self.feature_module.register_forward_pre_hook(pre)
        try:
            self.model(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        return seen["z"]


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """One torch thread and deterministic kernels: results independent of the core count."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def build_network(spec: SurrogateSpec, sample_shape: tuple[int, ...], classes: int) -> nn.Module:
    """A fresh zoo network for these images, or whatever the user's `file.py:build` returns."""
    from qtool.exporters.pytorch import is_factory_spec, load_factory

    if is_factory_spec(spec.model):
        net, _ = load_factory(spec.model)
        return net
    from qtool.models import get_spec

    try:
        zoo = get_spec(spec.model)
    except QtoolError as exc:
        raise QtoolError(f"{exc}, or give path/to/file.py:build", param="surrogate") from None
    return zoo.build((1, *sample_shape), classes)


def resolve_feature_layer(net: nn.Module, name: str | None) -> str:
    modules = dict(net.named_modules())
    if name is None:
        if "stage1" in modules:
            return "stage1"
        children = [n for n, _ in net.named_children()]
        if not children:
            raise QtoolError("the surrogate has no sub-modules to read shallow features from")
        return children[0]
    if name not in modules or not name:
        shown = [n for n in modules if n and n.count(".") < 2][:20]
        raise QtoolError(
            f"the surrogate has no module {name!r}; its modules include {', '.join(shown)}",
            param="feature_layer",
        )
    return name


def train_surrogate(spec: SurrogateSpec, knowledge: Knowledge, seed: int) -> Surrogate:
    """Train on the attacker's samples only; deterministic for (spec, samples, seed)."""
    start = time.perf_counter()
    x = np.asarray(knowledge.x, np.float32)
    if x.ndim != 4:
        raise QtoolError("attacks need image data (N, C, H, W); this data set is a table")
    mean = x.mean(axis=(0, 2, 3))
    std = np.maximum(x.std(axis=(0, 2, 3)), MIN_STD)
    with single_thread():
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        net = build_network(spec, tuple(x.shape[1:]), knowledge.num_classes)
        layer = resolve_feature_layer(net, spec.feature_layer)
        model = Normalized(net, mean, std)
        _fit(model, torch.from_numpy(x), torch.from_numpy(knowledge.y), spec, generator)
        model.eval()
        with torch.no_grad():
            pred = model(torch.from_numpy(x)).argmax(1).numpy()
    accuracy = float(np.mean(pred == knowledge.y))
    return Surrogate(model, layer, accuracy, time.perf_counter() - start, knowledge.label, seed)


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: SurrogateSpec, gen) -> None:
    """Adam for a fixed number of steps on batches drawn with replacement, each shifted by a
    random offset of up to one pixel (zero filled)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    batch = min(spec.batch_size, len(x))
    padded = nn.functional.pad(x, (1, 1, 1, 1))
    h, w = x.shape[-2:]
    model.train()
    for _ in range(spec.steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        dy, dx = (int(v) for v in torch.randint(0, 3, (2,), generator=gen))
        xb = padded[idx, :, dy : dy + h, dx : dx + w]
        loss = loss_fn(model(xb), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
