"""What every data source hands back (`Dataset`) and what a parsed spec string is (`DataSpec`).

Kept apart from the source registry so that each source module can build a `Dataset`
without importing the registry that lists it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qtool import limits
from qtool.errors import QtoolError

SPLITS = ("train", "val", "test")


def check_labels(labels: np.ndarray, classes: int | None, where: str) -> np.ndarray:
    """Labels as int64 class indices, refused unless every one is a whole number from 0 to
    `classes` - 1 (or, without class names, within the classes limit): a label of -1 would
    index the last class and 2.7 would become 2, silently."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biuf":
        raise QtoolError(f"{where}: labels of type {labels.dtype} are not class indices")
    if labels.size == 0:
        return labels.astype(np.int64)
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all() or (labels != np.round(labels)).any():
            bad = labels[~np.isfinite(labels) | (labels != np.round(labels))][0]
            raise QtoolError(f"{where}: label {bad} is not a whole number; labels index classes")
    low, high = labels.min(), labels.max()
    if low < 0:
        raise QtoolError(f"{where}: label {low} is negative; labels count classes from 0")
    if classes is not None and high >= classes:
        raise QtoolError(
            f"{where}: label {high} is out of range for {classes} classes (0..{classes - 1})"
        )
    limits.check("classes", int(high) + 1, f"the classes labelled in {where}")
    return labels.astype(np.int64)


@dataclass
class Dataset:
    """Samples of one split of one data set, ready to feed a model."""

    spec: str
    split: str
    x: np.ndarray
    y: np.ndarray | None
    class_names: list[str]
    kind: str  # "image" (N, C, H, W) or "tabular" (N, F)
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def take(self, n: int | None, seed: int = 0) -> Dataset:
        """A seeded, stratification-free subsample of at most n items (all when n is None)."""
        if n is None or n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        y = None if self.y is None else self.y[idx]
        return Dataset(
            self.spec, self.split, self.x[idx], y, self.class_names, self.kind, self.extra
        )


@dataclass(frozen=True)
class DataSpec:
    """A spec string taken apart: `source[:argument][:split]`.

    `argument` is whatever the source takes after its name (a path for npz/folder), kept as
    the user wrote it; `split` is set only when the spec ends in one.
    """

    source: str
    argument: str | None
    split: str | None

    @property
    def path(self) -> Path | None:
        """The argument as a file-system path (for sources whose argument is one)."""
        return None if self.argument is None else Path(self.argument).expanduser()

    def __str__(self) -> str:
        base = self.source if self.argument is None else f"{self.source}:{self.argument}"
        return base if self.split is None else f"{base}:{self.split}"
