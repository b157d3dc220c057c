"""`digits` and `breast-cancer`: real data scikit-learn ships, with one fixed split.

breast-cancer is the Wisconsin diagnostic set, a genuine medical task (class 0, malignant,
is the finding a screening test must not miss). Both are split 70/10/20 train/val/test,
stratified, with a fixed seed, so every machine and every stage sees the same samples.
"""

from __future__ import annotations

import numpy as np

from qtool.data.dataset import Dataset, DataSpec
from qtool.errors import MissingExtra

SPLIT_SEED = 0


def _sklearn(name: str):
    """scikit-learn's data sets and splitter, or the install line naming the data set."""
    try:
        import sklearn.datasets as datasets
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise MissingExtra("scikit-learn", "data", f"the {name} data set") from exc
    return datasets, train_test_split


def split_indices(labels: np.ndarray, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Stratified 70/10/20 train/val/test indices, the same on every machine for a seed."""
    _, train_test_split = _sklearn("digits or breast-cancer")
    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=0.2, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=0.125, stratify=labels[rest], random_state=seed)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _split(name: str, x: np.ndarray, bunch, kind: str, split: str, extra: dict) -> Dataset:
    y = bunch.target.astype(np.int64)
    idx = split_indices(y)[split]
    names = [str(c) for c in bunch.target_names]
    return Dataset(name, split, np.ascontiguousarray(x[idx]), y[idx], names, kind, extra)


def load_digits(spec: DataSpec, split: str, explicit: bool) -> Dataset:
    """8x8 grey images of handwritten digits, 1797 of them, as (N, 1, 8, 8) in [0, 1]."""
    datasets, _ = _sklearn("digits")
    bunch = datasets.load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    return _split("digits", x, bunch, "image", split, {})


def load_breast_cancer(spec: DataSpec, split: str, explicit: bool) -> Dataset:
    """30 features of 569 breast masses (unscaled); malignant is the positive class."""
    datasets, _ = _sklearn("breast-cancer")
    bunch = datasets.load_breast_cancer()
    x = bunch.data.astype(np.float32)
    return _split("breast-cancer", x, bunch, "tabular", split, {"positive_class": 0})
