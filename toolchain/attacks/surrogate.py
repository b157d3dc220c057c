"""The attacker's surrogate: a network trained on the attacker's K samples per class only.

Imported only by the methods that need torch. Training is a fixed number of Adam steps (with
K = 1 an epoch is a single batch, so an epoch-based recipe would barely move) on a task from
`qtool.attacks.pretext`: the class labels for feature and pgd-transfer, a label-free task
(instance discrimination or contrastive learning on random views) for ETF, deterministic for
a seed on one thread. The surrogate normalises its input itself, so attacks work in pixel
space [0, 1], the space the target's images live in before its own preprocessing.

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
    """`net` applied to (x - mean) / std, per channel: the attacker's own preprocessing; then
    the training task's head, if it has one."""

    def __init__(
        self, net: nn.Module, mean: np.ndarray, std: np.ndarray, head: nn.Module | None = None
    ):
        super().__init__()
        self.net = net
        self.head = head
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net((x - self.mean) / self.std)
        return out if self.head is None else self.head(out)


@dataclass
class Surrogate:
    model: Normalized
    feature_layer: str
    train_accuracy: float  # on the training task: classes, or naming/finding a random view
    seconds: float
    k_label: str
    seed: int
    task: str = "supervised"

    @property
    def feature_module(self) -> nn.Module:
        return dict(self.model.net.named_modules())[self.feature_layer]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the feature layer; the forward pass stops there."""
        out: dict[str, torch.Tensor] = {}

        def post(_module, _inputs, output):
            out["f"] = output
            raise _Stop

        handle = self.feature_module.register_forward_hook(post)
        try:
            self.model(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        return out["f"]


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


def build_network(spec: SurrogateSpec, sample_shape: tuple[int, ...], outputs: int) -> nn.Module:
    """A fresh zoo network for these images with `outputs` outputs, or whatever the user's
    `file.py:build` returns."""
    from qtool.exporters.pytorch import is_factory_spec, load_factory

    if is_factory_spec(spec.model):
        net, _ = load_factory(spec.model)
        return net
    from qtool.models import get_spec

    try:
        zoo = get_spec(spec.model)
    except QtoolError as exc:
        raise QtoolError(f"{exc}, or give path/to/file.py:build", param="surrogate") from None
    return zoo.build((1, *sample_shape), outputs)


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


def train_surrogate(
    spec: SurrogateSpec, knowledge: Knowledge, seed: int, task: str = "supervised"
) -> Surrogate:
    """Train on the attacker's samples only, on `task` (a `pretext.TASKS` name); deterministic
    for (spec, samples, seed, task)."""
    from qtool.attacks.pretext import TASKS, Batch

    start = time.perf_counter()
    job = TASKS.get(task)
    x = np.asarray(knowledge.x, np.float32)
    if x.ndim != 4:
        raise QtoolError("attacks need image data (N, C, H, W); this data set is a table")
    mean = x.mean(axis=(0, 2, 3))
    std = np.maximum(x.std(axis=(0, 2, 3)), MIN_STD)
    xt, yt = torch.from_numpy(x), torch.from_numpy(knowledge.y)
    with single_thread():
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        net = build_network(spec, tuple(x.shape[1:]), job.outputs(knowledge.num_classes))
        layer = resolve_feature_layer(net, spec.feature_layer)
        head = job.head(_outputs(net, xt[:1]), len(x))
        model = Normalized(net, mean, std, head)
        optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=1e-4)
        batch = Batch(xt, yt, min(spec.batch_size, len(x)), generator)
        model.train()
        for _ in range(spec.steps):
            loss = job.loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        check = torch.Generator().manual_seed(seed)
        accuracy = job.accuracy(model, xt, yt, check)
    return Surrogate(
        model, layer, accuracy, time.perf_counter() - start, knowledge.label, seed, job.name
    )


def _outputs(net: nn.Module, sample: torch.Tensor) -> int:
    """How many numbers the network gives per image (the head's input), from one dry run."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        out = net(sample)
    net.train(was_training)
    return int(out.flatten(1).shape[1])
