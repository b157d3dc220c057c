"""modelfile.wire: protobuf framing read by hand agrees with the protobuf library."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from qtool.errors import QtoolError
from qtool.modelfile.wire import (
    FIXED32,
    LENGTH_DELIMITED,
    VARINT,
    as_signed64,
    encode_varint,
    fields,
    length_delimited,
    length_prefix_size,
    read_varint,
    text,
    varints,
)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**31, 2**63, 2**64 - 1])
def test_varint_round_trip(value):
    encoded = encode_varint(value)
    assert read_varint(encoded, 0, len(encoded)) == (value, len(encoded))
    assert len(encoded) == max(1, -(-value.bit_length() // 7))


def test_negative_int64_reads_back_through_as_signed64():
    tensor = helper.make_tensor("t", TensorProto.INT64, [3], [-1, -(2**63), 5])
    data = tensor.SerializeToString()
    (occurrence,) = [f for f in fields(data, 0, len(data)) if f.number == 7]
    assert [as_signed64(v) for v in varints(data, occurrence)] == [-1, -(2**63), 5]


def test_fields_give_the_byte_spans_protobuf_wrote():
    """A TensorProto serialized by protobuf: dims (one varint per occurrence: onnx.proto is
    proto2), data_type, name and float_data (packed fixed32), each found at its offset."""
    values = np.arange(6, dtype=np.float32)
    tensor = helper.make_tensor("weights", TensorProto.FLOAT, [2, 3], values.tolist())
    data = tensor.SerializeToString()
    occurrences = list(fields(data, 0, len(data)))
    found = {f.number: f for f in occurrences}
    assert [v for f in occurrences if f.number == 1 for v in varints(data, f)] == [2, 3]
    assert found[2].wire == VARINT and found[2].value == TensorProto.FLOAT
    assert found[8].wire == LENGTH_DELIMITED and text(data, found[8]) == "weights"
    payload = data[found[4].start : found[4].end]
    np.testing.assert_array_equal(np.frombuffer(payload, "<f4"), values)
    assert length_prefix_size(data, found[4]) == 1
    assert occurrences[0].tag_start == 0 and occurrences[-1].end == len(data)
    assert all(a.end == b.tag_start for a, b in zip(occurrences[:-1], occurrences[1:], strict=True))


def test_unpacked_fixed32_and_rebuilt_fields_parse_with_protobuf():
    body = b"".join(bytes([4 << 3 | FIXED32]) + np.float32(v).tobytes() for v in (1.5, -2.0))
    body += length_delimited(8, b"x") + bytes([2 << 3 | VARINT, TensorProto.FLOAT])
    parsed = TensorProto.FromString(body)
    assert list(parsed.float_data) == [1.5, -2.0] and parsed.name == "x"
    spans = [(f.number, f.wire, f.end - f.start) for f in fields(body, 0, len(body))]
    assert spans == [(4, FIXED32, 4), (4, FIXED32, 4), (8, LENGTH_DELIMITED, 1), (2, VARINT, 1)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80", "truncated varint"),
        (b"\x08" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
        (b"\x00\x01", "field number 0"),
        (b"\x0a\x05abc", "runs past its message"),
        (b"\x09\x01\x02", "truncated fixed64"),
        (b"\x0d\x01", "truncated fixed32"),
        (b"\x0b", "unsupported wire type 3"),
    ],
)
def test_malformed_framing_is_one_qtool_error(data, message):
    with pytest.raises(QtoolError, match=message) as caught:
        list(fields(data, 0, len(data)))
    assert "not a well-formed ONNX protobuf" in str(caught.value)
