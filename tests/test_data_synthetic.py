"""`synthetic:KIND[:SIZE]`: parses, fixed seeded splits, sizes and channels, learnable."""

from __future__ import annotations

import numpy as np
import pytest

from qtool.data import synthetic
from qtool.data.dataset import DataSpec
from qtool.data.sources import load_dataset, parse_spec
from qtool.errors import QtoolError


def test_spec_parses_kind_size_and_split():
    assert parse_spec("synthetic:lesion") == DataSpec("synthetic", "lesion", None)
    assert parse_spec("synthetic:lesion:96:val") == DataSpec("synthetic", "lesion:96", "val")
    assert synthetic.parse("lesion") == ("lesion", 64)
    assert synthetic.parse("lesion-rgb:224") == ("lesion-rgb", 224)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("synthetic:tumour", "unknown synthetic kind 'tumour'"),
        ("synthetic:lesion:27", "from 28 to 224"),
        ("synthetic:lesion:225", "from 28 to 224"),
        ("synthetic:lesion:big", "whole number"),
    ],
)
def test_bad_kind_or_size_is_bad_input_at_parse_time(spec, fragment):
    with pytest.raises(QtoolError, match=fragment):
        parse_spec(spec)


def test_splits_are_fixed_balanced_and_distinct():
    test = load_dataset("synthetic:lesion:28")  # the default split
    again = load_dataset("synthetic:lesion:28:test")
    val = load_dataset("synthetic:lesion:28:val")
    assert test.split == "test" and len(test) == 400 and len(val) == 400
    assert test.x.shape == (400, 1, 28, 28) and test.x.dtype == np.float32
    assert np.array_equal(test.x, again.x) and np.array_equal(test.y, again.y)
    assert not np.array_equal(test.x, val.x)
    assert test.y.sum() == 200 and test.class_names == ["normal", "lesion"]
    assert test.extra["positive_class"] == 1
    # stored as uint8 like a scan: every value is k/255
    assert np.allclose(test.x * 255, np.rint(test.x * 255), atol=1e-3)
    assert test.spec == "synthetic:lesion:28"


def test_rgb_and_sizes():
    data = load_dataset("synthetic:lesion-rgb:40:val")
    assert data.x.shape == (400, 3, 40, 40)
    assert 0.0 <= data.x.min() and data.x.max() <= 1.0
    assert not np.array_equal(data.x[:, 0], data.x[:, 1])  # a tint per channel


def test_the_lesion_is_learnable_from_blurred_brightness():
    """A blob brighter than the texture: the brightest smoothed spot separates the classes."""
    data = load_dataset("synthetic:lesion:32:val")
    img = data.x[:, 0] - data.x[:, 0].mean(axis=(1, 2), keepdims=True)
    kernel = np.ones(5) / 5
    smooth = np.apply_along_axis(lambda r: np.convolve(r, kernel, "same"), 2, img)
    smooth = np.apply_along_axis(lambda c: np.convolve(c, kernel, "same"), 1, smooth)
    score = smooth.max(axis=(1, 2)) / img.std(axis=(1, 2))
    pos, neg = score[data.y == 1], score[data.y == 0]
    auc = (pos[:, None] > neg[None, :]).mean()
    assert 0.7 < auc < 1.0  # learnable, and not trivially
