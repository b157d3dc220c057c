"""Fitting samples to a model's input shape and normalising them."""

from __future__ import annotations

import numpy as np
import pytest

from qtool.data.shaping import fit_to_input, normalize, resize_images
from qtool.errors import QtoolError


def test_fit_to_input_resizes_converts_channels_and_flattens():
    x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    assert fit_to_input(x, ["N", 3, 16, 16]).shape == (2, 3, 16, 16)
    assert fit_to_input(x, ["N", 64]).shape == (2, 64)
    constant = np.ones((1, 1, 4, 4), np.float32)
    assert np.allclose(resize_images(constant, 7, 9), 1.0)
    with pytest.raises(QtoolError, match="features"):
        fit_to_input(x, ["N", 30])
    norm = normalize(np.ones((2, 3), np.float32), [1, 2, 3], [1, 2, 4])
    assert np.allclose(norm, [[0, -0.5, -0.5]] * 2)


def test_channels_repeat_or_average_and_symbolic_dims_stay():
    x = np.random.default_rng(1).random((2, 3, 5, 5), dtype=np.float32)
    grey = fit_to_input(x, [1, 1, 5, 5])
    assert np.allclose(grey[:, 0], x.mean(axis=1))
    rgb = fit_to_input(grey, ["N", 3, "H", "W"])
    assert rgb.shape == (2, 3, 5, 5) and np.array_equal(rgb[:, 0], rgb[:, 2])
    assert fit_to_input(x, ["N", "C", "H", "W"]).shape == x.shape
    same = fit_to_input(x, [None, None, None, None])
    assert np.array_equal(same, x)
    with pytest.raises(QtoolError, match="2 channels"):
        fit_to_input(x[:, :2], ["N", 3, 5, 5])
    seq = np.zeros((2, 4, 6), np.float32)
    assert fit_to_input(seq, ["N", 4, "T"]) is seq  # other ranks pass when they match
    with pytest.raises(QtoolError, match="do not fit the model input"):
        fit_to_input(seq, ["N", 5, 6])


def test_bilinear_resize_matches_torch_half_pixel():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).random((2, 3, 7, 5), dtype=np.float32)
    for h, w in ((14, 10), (3, 4), (7, 11)):
        ours = resize_images(x, h, w)
        theirs = torch.nn.functional.interpolate(
            torch.from_numpy(x), size=(h, w), mode="bilinear", align_corners=False
        ).numpy()
        assert np.allclose(ours, theirs, atol=1e-5), (h, w)


def test_normalize_per_channel_and_identity():
    x = np.ones((2, 3, 2, 2), np.float32)
    out = normalize(x, [0.5, 1.0, 0.0], [0.5, 1.0, 2.0])
    assert np.allclose(out[:, 0], 1.0) and np.allclose(out[:, 1], 0.0)
    assert np.allclose(out[:, 2], 0.5)
    assert normalize(x, None, None) is x
    assert np.allclose(normalize(x, [0.3], None), 0.7)  # one mean for every channel
