"""The attacker's knowledge: K labelled images per class, nothing else.

No training data beyond these, no weights and no outputs of the target. K = None means the
whole train split (the paper's "complete training data" reference point).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qtool.data.datasets import Dataset
from qtool.errors import QtoolError


@dataclass(frozen=True)
class Knowledge:
    x: np.ndarray
    y: np.ndarray
    num_classes: int
    k: int | None  # per class; None = all

    @property
    def label(self) -> str:
        return "all" if self.k is None else str(self.k)


def attacker_samples(train: Dataset, k: int | None, seed: int) -> Knowledge:
    """K samples of every class drawn without replacement (seeded); all of them for None."""
    if train.y is None:
        raise QtoolError(
            f"data set {train.spec} has no labels in its {train.split} split; the attacker's "
            "samples are drawn per class from labelled train images",
            param="data_spec",
        )
    classes = max(train.num_classes, int(train.y.max()) + 1)
    if k is None:
        return Knowledge(train.x, train.y, classes, None)
    if k < 1:
        raise QtoolError(
            f"samples per class must be at least 1, got {k}", param="samples_per_class"
        )
    rng = np.random.default_rng(seed)
    picked = []
    for c in range(classes):
        members = np.flatnonzero(train.y == c)
        if len(members) < k:
            raise QtoolError(
                f"class {c} has only {len(members)} train samples, fewer than {k} per class; "
                "lower the number of samples per class or use all",
                param="samples_per_class",
            )
        picked.append(rng.choice(members, size=k, replace=False))
    idx = np.sort(np.concatenate(picked))
    return Knowledge(train.x[idx], train.y[idx], classes, k)
