"""Search value arithmetic: what a weight becomes when one bit of its stored word toggles."""

from __future__ import annotations

import numpy as np
import pytest

from qtool.errors import QtoolError
from qtool.faults.search.values import FLOAT, INT8, UINT8, flipped_values, int8_flip


def test_int8_is_twos_complement():
    assert int8_flip(5, 7) == -123 and int8_flip(-128, 7) == 0 and int8_flip(-1, 0) == -2
    values = np.arange(-128, 128)
    new = flipped_values(INT8, values, np.arange(8))
    assert new.shape == (256, 8)
    expected = (values.astype(np.int8).view(np.uint8)[:, None] ^ (1 << np.arange(8))).astype(
        np.uint8
    )
    np.testing.assert_array_equal(new, expected.view(np.int8).astype(np.float64))
    assert (np.abs(new[:, 7] - values) == 128).all()  # the msb is worth 128 either way


def test_uint8():
    new = flipped_values(UINT8, np.array([0, 200, 255]), [0, 7])
    np.testing.assert_array_equal(new, [[1, 128], [201, 72], [254, 127]])


def test_float32_toggles_the_ieee754_word():
    values = np.random.default_rng(0).standard_normal(100).astype(np.float32)
    bits = np.array([0, 22, 23, 30, 31])
    new = flipped_values(FLOAT, values, bits)
    words = values.view(np.uint32)[:, None] ^ (np.uint32(1) << bits.astype(np.uint32))
    with np.errstate(invalid="ignore", over="ignore"):  # some words become Inf / NaN
        expected = words.view(np.float32).astype(np.float64)
    np.testing.assert_array_equal(new, expected)
    np.testing.assert_array_equal(new[:, 4], -values)  # the sign bit
    one = flipped_values(FLOAT, np.array([1.0, 0.5], np.float32), [30])
    assert np.isinf(one[0, 0]) and one[1, 0] == pytest.approx(2.0**127)


def test_other_types_are_refused():
    with pytest.raises(QtoolError, match="float32, int8 and uint8"):
        flipped_values(10, np.zeros(2, np.float16), [0])
