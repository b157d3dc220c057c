"""Stored words and their bits: the layout of each ONNX data type's word and named bit classes.

A fault hits a bit of a *stored word*: the little-endian unit a tensor's bytes are made of
(4 bytes for float32, 1 for int8, one byte holding two elements for the 4-bit types, two
float words per complex element). Bit 0 is the least significant bit of the word. Named bit
classes (`sign`, `exponent`, `exponent-msb`, `mantissa`, `msb`, `lsb`, `any`) are resolved
per data type here, so every fault model and every selection speaks the same numbering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from qtool.modelfile.locate import PACKED_4BIT
from qtool.registry import Registry

# data type -> (bytes per stored word, numpy dtype of the word or a special decoder name)
_WORD = {
    1: (4, "<f4"),
    2: (1, "<u1"),
    3: (1, "<i1"),
    4: (2, "<u2"),
    5: (2, "<i2"),
    6: (4, "<i4"),
    7: (8, "<i8"),
    9: (1, "<u1"),
    10: (2, "<f2"),
    11: (8, "<f8"),
    12: (4, "<u4"),
    13: (8, "<u8"),
    14: (4, "<f4"),  # complex64: two float32 words per element
    15: (8, "<f8"),  # complex128
    16: (2, "bfloat16"),
    17: (1, "float8_e4m3fn"),
    18: (1, "float8_e4m3fnuz"),
    19: (1, "float8_e5m2"),
    20: (1, "float8_e5m2fnuz"),
    21: (1, "uint4"),
    22: (1, "int4"),
    23: (1, "float4_e2m1fn"),
}
_SIGNED_INT = {3, 5, 6, 7, 22}
_COMPLEX = {14, 15}
# float layouts: data type -> (sign bit, lowest exponent bit, highest exponent bit) of an
# element (4-bit floats: of each nibble; the second nibble is the same shifted by 4).
_FLOAT_BITS = {
    1: (31, 23, 30),
    14: (31, 23, 30),
    10: (15, 10, 14),
    16: (15, 7, 14),
    11: (63, 52, 62),
    15: (63, 52, 62),
    17: (7, 3, 6),
    18: (7, 3, 6),
    19: (7, 2, 6),
    20: (7, 2, 6),
    23: (3, 1, 2),
}
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


@dataclass(frozen=True)
class WordLayout:
    """How one data type is stored: word size, the elements a word holds, float fields."""

    data_type: int
    size: int  # bytes per stored word
    kind: str  # numpy dtype of the word ("<f4") or a decoder name ("bfloat16", "int4")
    element_bits: int  # bits of one element inside the word (4 for packed 4-bit types)
    float_bits: tuple[int, int, int] | None  # (sign, lowest exponent, highest exponent)
    signed_int: bool

    @property
    def width(self) -> int:
        return 8 * self.size

    @property
    def element_bases(self) -> tuple[int, ...]:
        """Lowest bit of each element a word holds: (0,) or (0, 4) for 4-bit types."""
        return tuple(range(0, self.width, self.element_bits))


LAYOUTS: dict[int, WordLayout] = {
    t: WordLayout(
        t, size, kind, 4 if t in PACKED_4BIT else 8 * size, _FLOAT_BITS.get(t), t in _SIGNED_INT
    )
    for t, (size, kind) in _WORD.items()
}


def word_layout(data_type: int) -> WordLayout | None:
    """The layout of a data type, or None when its words are not faultable (strings...)."""
    return LAYOUTS.get(data_type)


# --- named bit classes -----------------------------------------------------------------------

# one entry per name: (layout, lowest bit of an element) -> the class's bits of that element
BitClass = Callable[[WordLayout, int], Iterable[int]]
BIT_CLASSES: Registry[BitClass] = Registry("bit position")


def _float_field(pick: Callable[[int, int, int], Iterable[int]]) -> BitClass:
    def bits(layout: WordLayout, base: int) -> Iterable[int]:
        if layout.float_bits is None:
            return ()
        return (base + b for b in pick(*layout.float_bits))

    return bits


def _sign(layout: WordLayout, base: int) -> Iterable[int]:
    if layout.float_bits is not None:
        return (base + layout.float_bits[0],)
    if layout.signed_int:  # two's complement: the sign bit is the msb
        return (base + layout.element_bits - 1,)
    return ()


BIT_CLASSES.add("any", lambda layout, base: range(base, base + layout.element_bits))
BIT_CLASSES.add("sign", _sign)
BIT_CLASSES.add("exponent", _float_field(lambda sign, lo, hi: range(lo, hi + 1)))
BIT_CLASSES.add("exponent-msb", _float_field(lambda sign, lo, hi: (hi,)))
BIT_CLASSES.add("mantissa", _float_field(lambda sign, lo, hi: range(lo)))
BIT_CLASSES.add("msb", lambda layout, base: (base + layout.element_bits - 1,))
BIT_CLASSES.add("lsb", lambda layout, base: (base,))

MAX_BIT = 63  # the widest stored word has 64 bits


def bit_positions(data_type: int, items: Sequence[str | int]) -> tuple[int, ...]:
    """Bit numbers within one stored word of this data type that the items select: named
    classes (resolved for every element of the word) and bit numbers (kept if in the word)."""
    layout = LAYOUTS[data_type]
    chosen: set[int] = set()
    for item in items:
        if isinstance(item, int):
            if item < layout.width:
                chosen.add(item)
            continue
        bits = BIT_CLASSES.get(item, param="positions")
        for base in layout.element_bases:
            chosen.update(bits(layout, base))
    return tuple(sorted(chosen))


# --- reading words ---------------------------------------------------------------------------


def word_view(buf: bytes | bytearray, offset: int, count: int, size: int) -> np.ndarray:
    """`count` stored words of `size` bytes at `offset`, as little-endian unsigned ints."""
    dtype = np.dtype(_UINT[size]).newbyteorder("<")
    return np.frombuffer(buf, dtype=dtype, count=count, offset=offset)


def bit_values(words: np.ndarray, bit: int) -> np.ndarray:
    """0/1 per word: the value of `bit` in each."""
    shift = np.uint64(bit) if words.dtype.itemsize == 8 else bit
    return (words >> shift) & 1


def decode_word(data_type: int, raw: bytes, bit: int = 0) -> float | int | None:
    """The value of the element a word (or, for 4-bit types, the nibble holding `bit`) holds."""
    kind = LAYOUTS[data_type].kind
    if kind.startswith("<"):
        value = np.frombuffer(raw, dtype=kind)[0]
        return float(value) if kind[1] == "f" else int(value)
    if kind == "bfloat16":
        bits = int.from_bytes(raw, "little") << 16
        return float(np.array([bits], dtype="<u4").view("<f4")[0])
    if kind in ("uint4", "int4"):
        nibble = (raw[0] >> 4) & 0xF if bit >= 4 else raw[0] & 0xF
        return nibble - 16 if kind == "int4" and nibble >= 8 else nibble
    try:
        import ml_dtypes

        dtype = getattr(ml_dtypes, kind)
        if kind == "float4_e2m1fn":
            nibble = (raw[0] >> 4) & 0xF if bit >= 4 else raw[0] & 0xF
            return float(np.array([nibble], dtype=np.uint8).view(dtype)[0])
        return float(np.frombuffer(raw, dtype=dtype)[0])
    except (ImportError, AttributeError, TypeError, ValueError):
        return None


def element_of(data_type: int, dims: Sequence[int], word: int, bit: int) -> tuple[int, list[int]]:
    """Flat element index and coordinates of the element a word's bit belongs to."""
    if data_type in _COMPLEX:
        flat = word // 2
    elif data_type in PACKED_4BIT:
        flat = 2 * word + (1 if bit >= 4 else 0)
    else:
        flat = word
    if dims and 0 <= flat < int(np.prod(dims, dtype=np.int64)):
        coords = [int(c) for c in np.unravel_index(flat, dims)]
    else:
        coords = []
    return flat, coords
