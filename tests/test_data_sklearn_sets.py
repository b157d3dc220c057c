"""`digits` and `breast-cancer`: scikit-learn's shipped sets with a fixed stratified split."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits

from qtool.data.sklearn_sets import split_indices
from qtool.data.sources import load_dataset


def test_builtin_splits_are_disjoint_stratified_and_deterministic():
    splits = {s: load_dataset(f"digits:{s}") for s in ("train", "val", "test")}
    sizes = {s: len(d) for s, d in splits.items()}
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == 360
    # disjoint: no image appears in two splits (digits has a few duplicates, so compare counts)
    flat = {s: {d.x[i].tobytes() for i in range(len(d))} for s, d in splits.items()}
    assert len(flat["train"] & flat["test"]) <= 2
    # stratified: every class has 10 % +- 1 of the test split
    counts = np.bincount(splits["test"].y, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38
    again = load_dataset("digits", split="test")
    assert np.array_equal(again.x, splits["test"].x) and np.array_equal(again.y, splits["test"].y)
    assert splits["test"].x.shape[1:] == (1, 8, 8) and splits["test"].x.dtype == np.float32
    assert 0.0 <= splits["test"].x.min() and splits["test"].x.max() <= 1.0


def test_breast_cancer_is_tabular_with_malignant_positive():
    data = load_dataset("breast-cancer:test")
    assert data.kind == "tabular" and data.x.shape == (114, 30)
    assert data.class_names == ["malignant", "benign"]
    assert data.extra["positive_class"] == 0


def test_split_indices_partition_70_10_20_and_match_the_loaded_samples():
    bunch = load_breast_cancer()
    idx = split_indices(bunch.target)
    together = np.concatenate([idx["train"], idx["val"], idx["test"]])
    assert sorted(together.tolist()) == list(range(569))  # a partition: each sample once
    assert [len(idx[s]) for s in ("train", "val", "test")] == [398, 57, 114]
    test = load_dataset("breast-cancer:test")
    assert np.array_equal(test.x, bunch.data[idx["test"]].astype(np.float32))
    assert np.array_equal(test.y, bunch.target[idx["test"]])
    other = split_indices(bunch.target, seed=1)
    assert not np.array_equal(other["test"], idx["test"])  # the seed is what fixes it


def test_digits_pixels_are_scaled_from_0_16_to_0_1():
    bunch = load_digits()
    idx = split_indices(bunch.target)["val"]
    val = load_dataset("digits:val")
    assert np.allclose(val.x[:, 0], bunch.images[idx] / 16.0)
    assert val.class_names == [str(i) for i in range(10)] and val.kind == "image"
