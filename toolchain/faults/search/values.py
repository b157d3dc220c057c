"""What a weight becomes when one bit of its stored word is toggled (int8: two's complement)."""

from __future__ import annotations

import numpy as np

from qtool.errors import QtoolError
from qtool.modelfile.summary import dtype_name

FLOAT, UINT8, INT8 = 1, 2, 3
SEARCH_TYPES = {FLOAT: 32, UINT8: 8, INT8: 8}  # stored data type -> bits per word
NUMPY_TYPES = {FLOAT: "<f4", UINT8: "u1", INT8: "i1"}


def flipped_values(data_type: int, values: np.ndarray, bits: np.ndarray | list[int]) -> np.ndarray:
    """New value of each element when each bit is toggled: shape (len(values), len(bits)).

    int8 is two's complement (bit 7 is worth -128), so flipping bit 7 of 5 gives -123;
    float32 toggles a bit of the IEEE-754 word (results may be huge, Inf or NaN).
    """
    bits = np.asarray(bits, dtype=np.int64)
    if data_type == INT8:
        u = np.asarray(values).astype(np.int64) & 0xFF
        new = u[:, None] ^ (1 << bits)[None, :]
        return np.where(new >= 128, new - 256, new).astype(np.float64)
    if data_type == UINT8:
        u = np.asarray(values).astype(np.int64)
        return (u[:, None] ^ (1 << bits)[None, :]).astype(np.float64)
    if data_type == FLOAT:
        u = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
        new = (u[:, None] ^ (np.uint64(1) << bits.astype(np.uint64))[None, :]).astype(np.uint32)
        with np.errstate(over="ignore", invalid="ignore"):
            return new.view(np.float32).astype(np.float64)
    raise QtoolError(
        f"bit search supports float32, int8 and uint8 weights, not {dtype_name(data_type)}"
    )


def int8_flip(value: int, bit: int) -> int:
    """The int8 value after toggling one bit (two's complement): int8_flip(5, 7) == -123."""
    return int(flipped_values(INT8, np.array([value]), [bit])[0, 0])
