"""Stored words and named bit classes: layouts per data type, decoding, element indices."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto as T

from qtool.errors import QtoolError
from qtool.faults.words import (
    BIT_CLASSES,
    LAYOUTS,
    bit_positions,
    bit_values,
    decode_word,
    element_of,
    word_view,
)


def test_float32_fields_follow_ieee754():
    assert bit_positions(T.FLOAT, ["sign"]) == (31,)
    assert bit_positions(T.FLOAT, ["exponent"]) == tuple(range(23, 31))
    assert bit_positions(T.FLOAT, ["exponent-msb"]) == (30,)
    assert bit_positions(T.FLOAT, ["mantissa"]) == tuple(range(23))
    # the classes partition the word
    parts = [set(bit_positions(T.FLOAT, [c])) for c in ("sign", "exponent", "mantissa")]
    assert set().union(*parts) == set(range(32)) and sum(map(len, parts)) == 32
    # toggling each exponent bit of 1.0 really changes its exponent, mantissa bits do not
    one = np.array([1.0], np.float32).view(np.uint32)[0]
    for bit in range(32):
        value = np.array([one ^ np.uint32(1 << bit)], np.uint32).view(np.float32)[0]
        exponent_changed = np.frexp(value)[1] != np.frexp(np.float32(1.0))[1] or value < 0
        assert exponent_changed == (bit >= 23), bit


def test_int8_sign_is_the_twos_complement_msb():
    assert bit_positions(T.INT8, ["sign"]) == (7,) == bit_positions(T.INT8, ["msb"])
    assert bit_positions(T.INT8, ["exponent", "mantissa"]) == ()
    assert bit_positions(T.UINT8, ["sign"]) == ()  # unsigned: no sign bit
    raw = np.array([5], np.int8).view(np.uint8)[0] ^ (1 << 7)
    assert decode_word(T.INT8, bytes([raw])) == 5 - 128


def test_other_layouts():
    assert bit_positions(T.FLOAT16, ["exponent"]) == tuple(range(10, 15))
    assert bit_positions(T.BFLOAT16, ["exponent-msb", "sign"]) == (14, 15)
    assert bit_positions(T.DOUBLE, ["exponent-msb"]) == (62,)
    assert bit_positions(T.INT32, ["lsb", "msb"]) == (0, 31)
    assert len(bit_positions(T.INT64, ["any"])) == 64
    assert bit_positions(T.INT8, [0, 9]) == (0,)  # bit 9 is outside an 8-bit word
    # 4-bit types: two elements per byte, classes apply to each nibble
    assert bit_positions(T.INT4, ["sign"]) == (3, 7)
    assert bit_positions(T.UINT4, ["msb", "lsb"]) == (0, 3, 4, 7)
    assert bit_positions(T.FLOAT4E2M1, ["exponent"]) == (1, 2, 5, 6)
    assert LAYOUTS[T.COMPLEX64].size == 4  # two float32 words per element


def test_unknown_bit_class_names_the_parameter():
    with pytest.raises(QtoolError, match="unknown bit position 'middle'") as caught:
        bit_positions(T.FLOAT, ["middle"])
    assert caught.value.param == "positions"
    assert BIT_CLASSES.names() == ["any", "sign", "exponent", "exponent-msb", "mantissa",
                                   "msb", "lsb"]  # fmt: skip


def test_word_view_and_bit_values():
    values = np.array([1.0, -2.0, 0.5], np.float32)
    buf = bytearray(b"xx" + values.tobytes())
    words = word_view(buf, 2, 3, 4)
    assert words.tolist() == values.view(np.uint32).tolist()
    assert bit_values(words, 31).tolist() == [0, 1, 0]
    big = word_view(np.array([2**63 + 1], np.uint64).tobytes(), 0, 1, 8)
    assert bit_values(big, 63).tolist() == [1] and bit_values(big, 0).tolist() == [1]


def test_decode_word_per_type():
    assert decode_word(T.FLOAT, np.float32(-1.5).tobytes()) == -1.5
    assert decode_word(T.INT16, np.int16(-300).tobytes()) == -300
    assert decode_word(T.BFLOAT16, np.array([1.0], ml_dtypes.bfloat16).tobytes()) == 1.0
    assert decode_word(T.INT4, bytes([0x8F]), bit=0) == -1  # low nibble 0xF
    assert decode_word(T.INT4, bytes([0x8F]), bit=5) == -8  # high nibble 0x8
    assert decode_word(T.FLOAT8E4M3FN, np.array([2.0], ml_dtypes.float8_e4m3fn).tobytes()) == 2.0


def test_element_of_maps_words_to_elements():
    assert element_of(T.FLOAT, (2, 3), 4, 30) == (4, [1, 1])
    assert element_of(T.COMPLEX64, (3,), 5, 0) == (2, [2])  # word 5 = imaginary part of 2
    assert element_of(T.INT4, (4,), 1, 6) == (3, [3])  # high nibble of byte 1
    assert element_of(T.FLOAT, (), 0, 0) == (0, [])  # a scalar has no coordinates
