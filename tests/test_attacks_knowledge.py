"""The attacker's knowledge: exactly K train images per class, seeded; all for None."""

from __future__ import annotations

import numpy as np
import pytest

from qtool.attacks.knowledge import attacker_samples
from qtool.data.datasets import Dataset, load_dataset
from qtool.errors import QtoolError

pytest.importorskip("sklearn")


def test_k_per_class_seeded_and_from_the_train_split():
    train = load_dataset("digits", "train")
    a = attacker_samples(train, 3, seed=5)
    assert np.bincount(a.y, minlength=10).tolist() == [3] * 10
    again = attacker_samples(train, 3, seed=5)
    other = attacker_samples(train, 3, seed=6)
    assert np.array_equal(a.x, again.x) and not np.array_equal(a.x, other.x)
    # every image is one of the train images (never a test image)
    flat = train.x.reshape(len(train.x), -1)
    assert all((flat == img.reshape(1, -1)).all(1).any() for img in a.x)
    assert a.label == "3" and attacker_samples(train, None, 0).label == "all"
    assert len(attacker_samples(train, None, 0).x) == len(train)


def test_refusals():
    train = load_dataset("digits", "train")
    with pytest.raises(QtoolError, match="fewer than 500"):
        attacker_samples(train, 500, 0)
    unlabelled = Dataset("x", "train", train.x, None, train.class_names, "image")
    with pytest.raises(QtoolError, match="no labels") as err:
        attacker_samples(unlabelled, 1, 0)
    assert err.value.param == "data_spec"
