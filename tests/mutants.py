"""Mutated ONNX files, as an attacker or a bad disk makes them: raw bytes and protobuf fields.

Two families, both deterministic for their arguments so hypothesis (tests/test_fuzz_*.py)
and the long benchmark (benchmarks/fuzz.py, a seeded `random.Random`) draw from the same
operators:

- raw bytes: set, flip, overwrite, insert, delete, truncate at an offset;
- protobuf fields, found by walking the serialized ModelProto with ONNX's own descriptors
  (`wire_fields`): every field occurrence at every depth, with its path (e.g.
  `graph.initializer[3].data_type`) and type; an edit replaces a varint with an
  interesting value, a string with invalid UTF-8 or a long text, a bytes payload with a
  shorter/longer one, or removes or duplicates a field, and re-encodes every enclosing
  length prefix.

The issue's reproducers (non-UTF-8 names and metadata, qtool metadata of the wrong type,
external data with a bad length or offset, dtype 99, an extra required input, a
DequantizeLinear without output) are named functions in `REPRODUCERS`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import onnx
from google.protobuf.descriptor import FieldDescriptor

from qtool.modelfile.wire import LENGTH_DELIMITED, VARINT, encode_varint, fields

INTERESTING_INTS = [
    0,
    1,
    2,
    3,
    7,
    8,
    15,
    16,
    17,
    99,
    127,
    128,
    255,
    256,
    2**15,
    2**16,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**40,
    2**62,
    2**63 - 1,
    2**63,
    2**64 - 1,
    -1,
    -2,
    -(2**31),
    -(2**63),
]
BAD_TEXTS = [
    b"\xff",
    b"\xc3\x28",
    b"a\x00b",
    b"\xed\xa0\x80",
    b"",
    b"x" * 300,
    b"../../x",
    b"/etc/passwd",
    "\u202e".encode(),
    b"\x80" * 8,
]


# --- raw bytes -------------------------------------------------------------------------------


def set_byte(data: bytes, offset: int, value: int) -> bytes:
    offset %= max(len(data), 1)
    return data[:offset] + bytes([value & 0xFF]) + data[offset + 1 :]


def flip_bit(data: bytes, offset: int, bit: int) -> bytes:
    offset %= max(len(data), 1)
    return set_byte(data, offset, data[offset] ^ (1 << (bit % 8)))


def overwrite(data: bytes, offset: int, chunk: bytes) -> bytes:
    offset %= max(len(data), 1)
    return data[:offset] + chunk + data[offset + len(chunk) :]


def insert(data: bytes, offset: int, chunk: bytes) -> bytes:
    offset %= len(data) + 1
    return data[:offset] + chunk + data[offset:]


def delete(data: bytes, offset: int, count: int) -> bytes:
    offset %= max(len(data), 1)
    return data[:offset] + data[offset + max(count, 1) :]


def truncate(data: bytes, offset: int) -> bytes:
    return data[: offset % max(len(data), 1)]


# --- protobuf fields -------------------------------------------------------------------------


@dataclass
class WireField:
    """One field occurrence: where its bytes are and what ONNX says it is."""

    path: str
    number: int
    wire: int
    tag_start: int
    start: int
    end: int
    kind: str  # "int", "string", "bytes", "message", "float", "other"
    parents: tuple[tuple[int, int, int], ...]  # (tag_start, start, end) of enclosing fields


_KINDS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_MESSAGE: "message",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_DOUBLE: "float",
}


def wire_fields(data: bytes) -> list[WireField]:
    """Every field occurrence of a serialized ModelProto, at every depth, in stored order."""
    out: list[WireField] = []
    _walk(memoryview(data), 0, len(data), onnx.ModelProto.DESCRIPTOR, "model", (), out, 0)
    return out


def _walk(buf, start, end, descriptor, path, parents, out, depth) -> None:
    if depth > 12:
        return
    counts: dict[int, int] = {}
    by_number = {f.number: f for f in descriptor.fields}
    try:
        occurrences = list(fields(buf, start, end))
    except Exception:  # a payload that is not a message after all
        return
    for f in occurrences:
        desc = by_number.get(f.number)
        name = desc.name if desc else f"field{f.number}"
        index = counts[f.number] = counts.get(f.number, -1) + 1
        kind = _KINDS.get(desc.type, "int") if desc else "other"
        here = f"{path}.{name}[{index}]"
        out.append(WireField(here, f.number, f.wire, f.tag_start, f.start, f.end, kind, parents))
        if kind == "message" and f.wire == LENGTH_DELIMITED:
            inner = (*parents, (f.tag_start, f.start, f.end))
            _walk(buf, f.start, f.end, desc.message_type, here, inner, out, depth + 1)


def replace_field(data: bytes, field: WireField, encoded: bytes) -> bytes:
    """Replace a whole field occurrence (tag included) by `encoded` (may be empty), fixing
    the length prefix of every enclosing message."""
    delta = len(encoded) - (field.end - field.tag_start)
    out = data[: field.tag_start] + encoded + data[field.end :]
    for tag_start, start, end in reversed(field.parents):  # innermost first keeps offsets
        key_end = _key_end(out, tag_start)
        new_len = end - start + delta
        prefix = encode_varint(new_len)
        out = out[:key_end] + prefix + out[start:]
        delta += len(prefix) - (start - key_end)
    return out


def _key_end(buf: bytes, pos: int) -> int:
    while buf[pos] & 0x80:
        pos += 1
    return pos + 1


def encode_field(number: int, wire: int, payload: bytes | int) -> bytes:
    key = encode_varint(number << 3 | wire)
    if wire == VARINT:
        return key + encode_varint(int(payload) & (2**64 - 1))
    return key + encode_varint(len(payload)) + payload


def edit_field(data: bytes, field: WireField, action: str, value: int | bytes) -> bytes:
    """One edit of one field: 'int' (a varint value), 'bytes' (a new payload), 'drop',
    'dup' (the field twice) or 'wire' (the same payload under another wire type)."""
    whole = data[field.tag_start : field.end]
    if action == "drop":
        return replace_field(data, field, b"")
    if action == "dup":
        return replace_field(data, field, whole + whole)
    if action == "int":
        return replace_field(data, field, encode_field(field.number, VARINT, value))
    if action == "bytes":
        payload = value if isinstance(value, bytes) else str(value).encode()
        return replace_field(data, field, encode_field(field.number, LENGTH_DELIMITED, payload))
    if action == "wire":
        key = encode_varint(field.number << 3 | (int(value) % 8))
        return replace_field(data, field, key + data[field.start : field.end])
    raise ValueError(action)


ACTIONS = ("int", "bytes", "drop", "dup", "wire")


def random_field_edit(data: bytes, rng: random.Random) -> bytes:
    """A seeded field edit of the kind the field's type invites (the benchmark's draw)."""
    found = wire_fields(data)
    field = rng.choice(found)
    if field.kind == "int" or field.wire == VARINT:
        choice = rng.choice(["int", "int", "int", "drop", "dup", "wire"])
        value = rng.choice(INTERESTING_INTS + [rng.randrange(-(2**63), 2**64)])
        return edit_field(data, field, choice, value)
    if field.kind == "string":
        choice = rng.choice(["bytes", "bytes", "drop", "dup"])
        return edit_field(data, field, choice, rng.choice(BAD_TEXTS))
    payload = data[field.start : field.end]
    choice = rng.choice(["bytes", "drop", "dup", "wire"])
    cut = rng.randrange(len(payload) + 1)
    value = rng.choice([payload[:cut], payload + bytes(rng.randrange(1, 64)), b""])
    return edit_field(data, field, choice, value)


def random_raw_edit(data: bytes, rng: random.Random) -> bytes:
    offset = rng.randrange(len(data))
    kind = rng.randrange(6)
    if kind == 0:
        return set_byte(data, offset, rng.randrange(256))
    if kind == 1:
        return flip_bit(data, offset, rng.randrange(8))
    if kind == 2:
        return overwrite(data, offset, rng.randbytes(rng.randrange(1, 17)))
    if kind == 3:
        return insert(data, offset, rng.randbytes(rng.randrange(1, 17)))
    if kind == 4:
        return delete(data, offset, rng.randrange(1, 17))
    return truncate(data, offset)


# --- the reproducers -----------------------------------------------------------------


def _model(data: bytes) -> onnx.ModelProto:
    return onnx.load_model_from_string(data)


def _metadata(data: bytes, key: str, value: str) -> bytes:
    model = _model(data)
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    for k, v in [*kept, (key, value)]:
        model.metadata_props.add(key=k, value=v)
    return model.SerializeToString()


def _raw_string(data: bytes, text: str, bad: bytes) -> bytes:
    """Replace the first string field holding exactly `text` by `bad` bytes."""
    for f in wire_fields(data):
        if f.kind == "string" and data[f.start : f.end] == text.encode():
            return edit_field(data, f, "bytes", bad)
    raise ValueError(f"no string field {text!r}")


def non_utf8_node_name(data: bytes) -> bytes:
    name = next(n.name for n in _model(data).graph.node if n.name)
    return _raw_string(data, name, b"\xff\xfe" + name.encode())


def non_utf8_metadata_key(data: bytes) -> bytes:
    return _raw_string(_metadata(data, "k", "v"), "k", b"\xc3\x28")


def non_utf8_metadata_value(data: bytes) -> bytes:
    return _raw_string(_metadata(data, "k", "vvvv"), "vvvv", b"\xff\xff")


def normalization_as_int(data: bytes) -> bytes:
    return _metadata(data, "qtool.normalization", "3")


def normalization_as_strings(data: bytes) -> bytes:
    return _metadata(data, "qtool.normalization", '{"mean": ["a"], "std": ["b"]}')


def normalization_wrong_length(data: bytes) -> bytes:
    return _metadata(
        data, "qtool.normalization", '{"mean": [0.1, 0.2, 0.3, 0.4, 0.5], "std": [1, 1, 1, 1, 1]}'
    )


def normalization_zero_std(data: bytes) -> bytes:
    return _metadata(data, "qtool.normalization", '{"mean": [0.5], "std": [0]}')


def class_names_as_int(data: bytes) -> bytes:
    return _metadata(data, "qtool.class_names", "7")


def class_names_wrong_length(data: bytes) -> bytes:
    return _metadata(data, "qtool.class_names", '["a", "b", "c"]')


def input_shape_as_text(data: bytes) -> bytes:
    return _metadata(data, "qtool.input_shape", '"big"')


def dtype_99(data: bytes) -> bytes:
    model = _model(data)
    model.graph.initializer[0].data_type = 99
    return model.SerializeToString()


def _external(data: bytes, length: str | None, offset: str | None) -> bytes:
    """The first initializer moved to external data `w.bin` (written by the caller as the
    bytes `external_payload` returns) with the given length/offset entries."""
    model = _model(data)
    t = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    t.ClearField("raw_data")
    t.data_location = onnx.TensorProto.EXTERNAL
    del t.external_data[:]
    t.external_data.add(key="location", value="w.bin")
    if offset is not None:
        t.external_data.add(key="offset", value=offset)
    if length is not None:
        t.external_data.add(key="length", value=length)
    return model.SerializeToString()


def external_payload(data: bytes) -> bytes:
    """The bytes `w.bin` holds for the external-data reproducers: the largest initializer."""
    model = _model(data)
    return max(model.graph.initializer, key=lambda t: len(t.raw_data)).raw_data


def external_negative_length(data: bytes) -> bytes:
    return _external(data, "-16", None)


def external_zero_length(data: bytes) -> bytes:
    return _external(data, "0", None)


def external_huge_length(data: bytes) -> bytes:
    return _external(data, str(2**40), None)


def external_text_offset(data: bytes) -> bytes:
    return _external(data, None, "twelve")


def external_negative_offset(data: bytes) -> bytes:
    return _external(data, None, "-4")


def extra_required_input(data: bytes) -> bytes:
    model = _model(data)
    first = model.graph.node[0]
    model.graph.input.append(
        onnx.helper.make_tensor_value_info("extra", onnx.TensorProto.FLOAT, [1])
    )
    model.graph.node.insert(0, onnx.helper.make_node("Identity", ["extra"], ["extra_out"]))
    model.graph.output.append(
        onnx.helper.make_tensor_value_info("extra_out", onnx.TensorProto.FLOAT, [1])
    )
    del first  # the original nodes are untouched
    return model.SerializeToString()


def dequantize_without_output(data: bytes) -> bytes:
    model = _model(data)
    node = next(n for n in model.graph.node if n.op_type == "DequantizeLinear")
    del node.output[:]
    return model.SerializeToString()


def node_without_inputs(data: bytes) -> bytes:
    model = _model(data)
    node = next(n for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm"))
    del node.input[:]
    return model.SerializeToString()


REPRODUCERS: dict[str, Callable[[bytes], bytes]] = {
    f.__name__: f
    for f in (
        non_utf8_node_name,
        non_utf8_metadata_key,
        non_utf8_metadata_value,
        normalization_as_int,
        normalization_as_strings,
        normalization_wrong_length,
        normalization_zero_std,
        class_names_as_int,
        class_names_wrong_length,
        input_shape_as_text,
        dtype_99,
        external_negative_length,
        external_zero_length,
        external_huge_length,
        external_text_offset,
        external_negative_offset,
        extra_required_input,
        dequantize_without_output,
        node_without_inputs,
    )
}
EXTERNAL_REPRODUCERS = {name for name in REPRODUCERS if name.startswith("external_")}
