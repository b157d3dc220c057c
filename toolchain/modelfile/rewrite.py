"""Re-encode a few initializers of a serialized ONNX model; copy every other byte as it was.

A bit flip needs each element stored as a fixed-width little-endian word. ONNX also allows
varint lists (`int32_data`, `int64_data`, `uint64_data`: ONNX Runtime's quantiser writes
zero points and int32 biases that way) and unpacked float/double lists; `to_flippable`
rewrites exactly those tensors as `raw_data`, with the same values, and recomputes the
length prefixes of the messages that enclose them. `replace_tensors` puts saved tensor bodies
back, which undoes it byte for byte. Where tensors are is `qtool.modelfile.locate`.

Only the main graph and the subgraphs of its nodes are rewritten; initializers of training
graphs and sparse initializers are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from qtool.modelfile.locate import (
    FIXED_WIDTH_FIELDS,
    GRAPH_INIT,
    GRAPH_NODE,
    MODEL_GRAPH,
    NODE_ATTR,
    T_RAW,
    T_UINT64,
    VARINT_FIELDS,
    TensorFields,
    node_label,
    parse_tensor,
    subgraph_paths,
)
from qtool.modelfile.wire import (
    LENGTH_DELIMITED,
    Field,
    as_signed64,
    encode_varint,
    fields,
    length_delimited,
    length_prefix_size,
    malformed,
    varints,
)

# Storage dtype of varint-encoded (int32_data / int64_data / uint64_data) values in raw_data.
VARINT_STORAGE = {
    2: "<u1",
    3: "<i1",
    4: "<u2",
    5: "<i2",
    6: "<i4",
    7: "<i8",
    9: "<u1",
    10: "<u2",
    12: "<u4",
    13: "<u8",
    16: "<u2",
    17: "<u1",
    18: "<u1",
    19: "<u1",
    20: "<u1",
    21: "<u1",
    22: "<u1",
    23: "<u1",
}

# fn(tensor_start, tensor_end, graph path) -> new TensorProto body, or None to keep it
_TensorFn = Callable[[int, int, str], "bytes | None"]


# --- the rebuild -----------------------------------------------------------------------------


def _rebuild(buf, start: int, end: int, child: Callable[[Field], bytes | None]) -> bytes | None:
    """A message with the payloads `child` returns for its length-delimited fields put in
    (length prefixes recomputed); every other byte copied. None: nothing changed."""
    pieces: list = []
    changed = False
    for f in fields(buf, start, end):
        new = child(f) if f.wire == LENGTH_DELIMITED else None
        if new is None:
            pieces.append(buf[f.tag_start : f.end])
            continue
        changed = True
        pieces.append(buf[f.tag_start : f.start - length_prefix_size(buf, f)])
        pieces.append(encode_varint(len(new)))
        pieces.append(new)
    return b"".join(bytes(p) for p in pieces) if changed else None


def _model(buf, fn: _TensorFn) -> bytes | None:
    def child(f: Field) -> bytes | None:
        return _graph(buf, f, "main", fn) if f.number == MODEL_GRAPH else None

    return _rebuild(buf, 0, len(buf), child)


def _graph(buf, g: Field, path: str, fn: _TensorFn) -> bytes | None:
    node_index = 0

    def child(f: Field) -> bytes | None:
        nonlocal node_index
        if f.number == GRAPH_INIT:
            return fn(f.start, f.end, path)
        if f.number == GRAPH_NODE:
            node_index += 1
            return _node(buf, f, path, node_index - 1, fn)
        return None

    return _rebuild(buf, g.start, g.end, child)


def _node(buf, n: Field, path: str, index: int, fn: _TensorFn) -> bytes | None:
    label, _ = node_label(buf, n.start, n.end, index)

    def child(f: Field) -> bytes | None:
        return _attribute(buf, f, f"{path}/{label}", fn) if f.number == NODE_ATTR else None

    return _rebuild(buf, n.start, n.end, child)


def _attribute(buf, a: Field, node_path: str, fn: _TensorFn) -> bytes | None:
    paths = {g.tag_start: sub for g, sub in subgraph_paths(buf, a, node_path)}

    def child(f: Field) -> bytes | None:
        sub = paths.get(f.tag_start)
        return None if sub is None else _graph(buf, f, sub, fn)

    return _rebuild(buf, a.start, a.end, child)


def rewrite_tensors(
    model_bytes: bytes | bytearray, fn: Callable[[memoryview, int, int, str], bytes | None]
) -> bytes:
    """Apply `fn(buf, start, end, graph)` to every initializer body; length prefixes of the
    enclosing messages are recomputed, every other byte is copied unchanged."""
    buf = memoryview(model_bytes)
    try:
        new = _model(buf, lambda s, e, g: fn(buf, s, e, g))
    except (IndexError, ValueError) as exc:
        raise malformed(str(exc)) from exc
    return bytes(model_bytes) if new is None else new


# --- typed fields -> raw_data ----------------------------------------------------------------


def _raw_payload(buf, t: TensorFields) -> tuple[bytes, int] | None:
    """The raw_data bytes for a tensor's typed data and the field number they replace."""
    for number in FIXED_WIDTH_FIELDS:
        if t.typed.get(number) and t.packed(number) is None:
            return b"".join(bytes(buf[f.start : f.end]) for f in t.typed[number]), number
    if any(t.typed.get(number) for number in FIXED_WIDTH_FIELDS):
        return None  # packed float/double: already fixed-width words in place
    for number in VARINT_FIELDS:
        occ = t.typed.get(number)
        if not occ:
            continue
        storage = VARINT_STORAGE.get(t.data_type)
        if storage is None:
            return None
        values = [v for f in occ for v in varints(buf, f)]
        if number == T_UINT64:
            arr = np.array(values, dtype=np.uint64)
        else:
            arr = np.array([as_signed64(v) for v in values], dtype=np.int64)
        return arr.astype(storage).tobytes(), number
    return None


def tensor_to_raw(buf, start: int, end: int) -> bytes | None:
    """A TensorProto body with its varint / unpacked typed data replaced by raw_data, put
    where the first replaced field stood; None when there is nothing to convert."""
    t = parse_tensor(buf, start, end)
    if t.raw is not None or t.is_external:
        return None
    payload = _raw_payload(buf, t)
    if payload is None:
        return None
    raw, dropped = payload
    pieces = []
    inserted = False
    for f in fields(buf, start, end):
        if f.number != dropped:
            pieces.append(bytes(buf[f.tag_start : f.end]))
        elif not inserted:
            pieces.append(length_delimited(T_RAW, raw))
            inserted = True
    return b"".join(pieces)


def to_flippable(
    model_bytes: bytes | bytearray, only: set[tuple[str, str]] | None = None
) -> tuple[bytes, list[str]]:
    """Convert varint-encoded (and unpacked typed) initializers to raw_data, only those.

    Returns the new bytes and the names of the converted tensors; with nothing to convert,
    the bytes come back unchanged. `only`: restrict to these (graph, name) pairs. Sparse
    initializers are left as they are.
    """
    converted: list[str] = []

    def fn(buf, start: int, end: int, graph: str) -> bytes | None:
        name = parse_tensor(buf, start, end).name
        if only is not None and (graph, name) not in only:
            return None
        new = tensor_to_raw(buf, start, end)
        if new is not None:
            converted.append(name)
        return new

    return rewrite_tensors(model_bytes, fn), converted


def replace_tensors(model_bytes: bytes | bytearray, bodies: dict[tuple[str, str], bytes]) -> bytes:
    """Put back the given TensorProto bodies (from `locate.tensor_bodies`), by (graph, name)."""

    def fn(buf, start: int, end: int, graph: str) -> bytes | None:
        return bodies.get((graph, parse_tensor(buf, start, end).name))

    return rewrite_tensors(model_bytes, fn)
