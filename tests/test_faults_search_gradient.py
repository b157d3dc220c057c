"""The first-order ranking of flips: the one-pass best byte flip picks what the eight-pass
ranking picks (the bit search's choices do not change with the faster path)."""

from __future__ import annotations

import numpy as np
import pytest

from qtool.faults.search.gradient import _ranked_flips, top_flips
from qtool.faults.search.values import INT8, UINT8, flipped_values


@pytest.mark.parametrize("data_type", [INT8, UINT8])
@pytest.mark.parametrize("seed", range(20))
def test_best_byte_flip_equals_the_eight_pass_ranking(data_type, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    dtype = np.int8 if data_type == INT8 else np.uint8
    values = rng.integers(0, 256, n).astype(np.uint8).view(dtype)
    # gradients with zeros, exact ties across elements and a few large values
    g = rng.choice([-2.0, -0.5, 0.0, 0.25, 1.0, 3.0], n) * rng.choice([1.0, 1e-3, 1e30], n)
    flipped = [(int(w), int(b)) for w, b in rng.integers(0, [n, 8], (5, 2))]
    flipped += [(flipped[0][0], (flipped[0][1] + k) % 8) for k in (1, 2)]  # one word thrice
    fast = top_flips(data_type, values, g, flipped, 1)
    assert fast == _ranked_flips(data_type, values, g, flipped, 1)
    if fast:
        gain, w, b, new = fast[0]
        assert new == flipped_values(data_type, values[w : w + 1], [b])[0, 0]
        assert gain == g[w] * (new - float(values[w])) > 0


def test_no_flip_raises_the_loss_when_the_gradient_is_zero():
    values = np.arange(-5, 5, dtype=np.int8)
    assert top_flips(INT8, values, np.zeros(10), [], 1) == []


def test_a_flipped_bit_is_not_proposed_again():
    values = np.array([0, 0], dtype=np.int8)
    g = np.array([1.0, 0.5])
    assert top_flips(INT8, values, g, [], 1)[0][1:3] == (0, 6)  # 0 -> 64
    gain, w, b, new = top_flips(INT8, values, g, [(0, 6)], 1)[0]
    assert (w, b, new) == (0, 5, 32.0)  # 32 x 1.0 beats 64 x 0.5
    gain, w, b, new = top_flips(INT8, values, g, [(0, 6), (0, 5)], 1)[0]
    assert (w, b, new) == (1, 6, 64.0)  # 64 x 0.5 beats 16 x 1.0
    every = [(0, b) for b in range(8)] + [(1, b) for b in range(8)]
    assert top_flips(INT8, values, g, every, 1) == []
    for flipped in ([(0, 6), (0, 5)], every[:7], every[3:12]):
        assert top_flips(INT8, values, g, flipped, 1) == _ranked_flips(INT8, values, g, flipped, 1)
