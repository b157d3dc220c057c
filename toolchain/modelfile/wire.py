"""The protobuf wire format, read and written by hand: fields with their byte offsets.

The protobuf library parses messages into objects but never says where a field's bytes lie
in the serialized message. Flips, checksums and bundles address stored bytes directly, so
`locate` (where each initializer's bytes are) and `rewrite` (re-encode a few tensors, copy
every other byte) walk the wire format with these helpers. Only the framing is decoded here;
what a field number means belongs to the ONNX messages in `locate`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from qtool.errors import QtoolError

# wire types (https://protobuf.dev/programming-guides/encoding/#structure)
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


def malformed(msg: str) -> QtoolError:
    """The one error for bytes that are not a well-formed ONNX protobuf."""
    return QtoolError(f"not a well-formed ONNX protobuf: {msg}")


def read_varint(buf, pos: int, end: int) -> tuple[int, int]:
    """The varint starting at `pos` (not reading past `end`) and the position after it."""
    result = shift = 0
    while True:
        if pos >= end:
            raise malformed("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise malformed("varint longer than 10 bytes")


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def as_signed64(value: int) -> int:
    """A varint decoded as unsigned, read back as the int64 it encodes (two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass
class Field:
    """One occurrence of a field: its number, wire type and where its bytes are."""

    number: int
    wire: int
    tag_start: int
    start: int  # first payload byte (after a length prefix for wire type 2)
    end: int  # one past the last payload byte
    value: int = 0  # decoded value for wire type 0


_FIXED_WIDTH = {FIXED64: 8, FIXED32: 4}


def fields(buf, start: int, end: int) -> Iterator[Field]:
    """Every field occurrence of the message in `buf[start:end]`, in stored order."""
    pos = start
    while pos < end:
        tag_start = pos
        key, pos = read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise malformed(f"field number 0 at byte {tag_start}")
        if wire == VARINT:
            value, new = read_varint(buf, pos, end)
            yield Field(number, wire, tag_start, pos, new, value)
        elif wire == LENGTH_DELIMITED:
            length, pos = read_varint(buf, pos, end)
            new = pos + length
            if new > end:
                raise malformed(f"field {number} at byte {tag_start} runs past its message")
            yield Field(number, wire, tag_start, pos, new)
        elif wire in _FIXED_WIDTH:
            new = pos + _FIXED_WIDTH[wire]
            if new > end:
                raise malformed(f"truncated fixed{8 * _FIXED_WIDTH[wire]} field")
            yield Field(number, wire, tag_start, pos, new)
        else:
            raise malformed(f"unsupported wire type {wire} at byte {tag_start}")
        pos = new


def text(buf, f: Field) -> str:
    return bytes(buf[f.start : f.end]).decode("utf-8", errors="replace")


def varints(buf, f: Field) -> list[int]:
    """Values of a repeated varint field occurrence, packed (wire 2) or not (wire 0)."""
    if f.wire == VARINT:
        return [f.value]
    out, pos = [], f.start
    while pos < f.end:
        v, pos = read_varint(buf, pos, f.end)
        out.append(v)
    return out


def length_prefix_size(buf, f: Field) -> int:
    """Bytes taken by the length prefix of a wire-type-2 field."""
    _, pos = read_varint(buf, f.tag_start, f.start)
    return f.start - pos


def length_delimited(number: int, payload: bytes) -> bytes:
    """A whole wire-type-2 field: tag, length prefix, payload."""
    return encode_varint(number << 3 | LENGTH_DELIMITED) + encode_varint(len(payload)) + payload
