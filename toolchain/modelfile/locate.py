"""Where each initializer's data bytes sit inside a serialized ONNX model.

The protobuf library parses messages but gives no byte offsets, so this module reads the
protobuf wire format itself, walking ModelProto -> GraphProto -> TensorProto (and the
subgraphs held by If/Loop/Scan node attributes, sparse initializers and training graphs).
Flips, checksums and packaging then address the stored bytes directly, without parsing the
whole model into objects or re-serialising it.

Only the few fields needed for the walk are decoded; large payloads (raw_data, packed
float_data) are skipped by their length prefix, so a 100 MB model is walked in milliseconds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qtool.errors import QtoolError

# TensorProto.DataType -> bytes per stored element (4-bit types: one byte holds two elements).
ITEMSIZE = {
    1: 4,  # FLOAT
    2: 1,  # UINT8
    3: 1,  # INT8
    4: 2,  # UINT16
    5: 2,  # INT16
    6: 4,  # INT32
    7: 8,  # INT64
    9: 1,  # BOOL
    10: 2,  # FLOAT16
    11: 8,  # DOUBLE
    12: 4,  # UINT32
    13: 8,  # UINT64
    14: 8,  # COMPLEX64
    15: 16,  # COMPLEX128
    16: 2,  # BFLOAT16
    17: 1,  # FLOAT8E4M3FN
    18: 1,  # FLOAT8E4M3FNUZ
    19: 1,  # FLOAT8E5M2
    20: 1,  # FLOAT8E5M2FNUZ
    21: 1,  # UINT4 (packed, two per byte)
    22: 1,  # INT4 (packed, two per byte)
    23: 1,  # FLOAT4E2M1 (packed, two per byte)
}
PACKED_4BIT = {21, 22, 23}
# Storage dtype of varint-encoded (int32_data / int64_data / uint64_data) values in raw_data.
_VARINT_STORAGE = {
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
VARINT_ENCODINGS = {"int32_data", "int64_data", "uint64_data"}
IN_PLACE_ENCODINGS = {"raw_data", "float_data", "double_data", "external"}

# Field numbers of onnx.proto3 messages walked here.
_MODEL_GRAPH, _MODEL_TRAINING = 7, 20
_TRAINING_GRAPHS = {1: "initialization", 2: "algorithm"}
_GRAPH_NODE, _GRAPH_NAME, _GRAPH_INIT, _GRAPH_SPARSE = 1, 2, 5, 15
_NODE_NAME, _NODE_OP, _NODE_ATTR = 3, 4, 5
_ATTR_NAME, _ATTR_G, _ATTR_GRAPHS = 1, 6, 11
_SPARSE_VALUES = 1
_T_DIMS, _T_TYPE, _T_FLOAT, _T_INT32, _T_STRING, _T_INT64 = 1, 2, 4, 5, 6, 7
_T_NAME, _T_RAW, _T_DOUBLE, _T_UINT64, _T_EXTERNAL, _T_LOCATION = 8, 9, 10, 11, 13, 14
_TYPED_FIELDS = {_T_FLOAT, _T_INT32, _T_STRING, _T_INT64, _T_DOUBLE, _T_UINT64}


@dataclass(frozen=True)
class TensorLocation:
    """One initializer's stored data: which file, which bytes, how they are encoded."""

    name: str
    data_type: int  # onnx.TensorProto data type
    dims: tuple[int, ...]
    itemsize: int  # bytes per stored element
    file: str | None  # None: inside the .onnx file; else external-data path (model's folder)
    offset: int  # byte offset of the first data byte in that file
    length: int  # number of data bytes
    encoding: str  # raw_data | float_data | double_data | external | int32_data | ...
    graph: str  # graph path, e.g. "main" or "main/If_0/then_branch"

    @property
    def flippable(self) -> bool:
        """True when the stored bytes are fixed-width words that can be changed in place."""
        return self.encoding in IN_PLACE_ENCODINGS and self.itemsize > 0

    @property
    def numel(self) -> int:
        return int(np.prod(self.dims, dtype=np.int64)) if self.dims else 1


# --- wire format -----------------------------------------------------------------------------


def _bad(msg: str) -> QtoolError:
    return QtoolError(f"not a well-formed ONNX protobuf: {msg}")


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _bad("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _bad("varint longer than 10 bytes")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


@dataclass
class _Field:
    number: int
    wire: int
    tag_start: int
    start: int  # first payload byte (after a length prefix for wire type 2)
    end: int  # one past the last payload byte
    value: int = 0  # decoded value for wire type 0


def _fields(buf, start: int, end: int) -> Iterator[_Field]:
    pos = start
    while pos < end:
        tag_start = pos
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _bad(f"field number 0 at byte {tag_start}")
        if wire == 0:
            value, new = _varint(buf, pos, end)
            yield _Field(number, wire, tag_start, pos, new, value)
            pos = new
        elif wire == 1:
            if pos + 8 > end:
                raise _bad("truncated fixed64 field")
            yield _Field(number, wire, tag_start, pos, pos + 8)
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _bad(f"field {number} at byte {tag_start} runs past its message")
            yield _Field(number, wire, tag_start, pos, pos + length)
            pos += length
        elif wire == 5:
            if pos + 4 > end:
                raise _bad("truncated fixed32 field")
            yield _Field(number, wire, tag_start, pos, pos + 4)
            pos += 4
        else:
            raise _bad(f"unsupported wire type {wire} at byte {tag_start}")


def _text(buf, f: _Field) -> str:
    return bytes(buf[f.start : f.end]).decode("utf-8", errors="replace")


def _varints(buf, f: _Field) -> list[int]:
    """Values of a repeated varint field occurrence, packed (wire 2) or not (wire 0)."""
    if f.wire == 0:
        return [f.value]
    out, pos = [], f.start
    while pos < f.end:
        v, pos = _varint(buf, pos, f.end)
        out.append(v)
    return out


# --- tensors ---------------------------------------------------------------------------------


@dataclass
class _TensorFields:
    name: str = ""
    data_type: int = 0
    dims: tuple[int, ...] = ()
    raw: _Field | None = None
    typed: dict | None = None  # field number -> list of occurrences
    external: dict | None = None
    data_location: int = 0


def _parse_tensor(buf, start: int, end: int) -> _TensorFields:
    t = _TensorFields(typed={}, external={})
    dims: list[int] = []
    for f in _fields(buf, start, end):
        n = f.number
        if n == _T_DIMS:
            dims.extend(v - (1 << 64) if v >= 1 << 63 else v for v in _varints(buf, f))
        elif n == _T_TYPE and f.wire == 0:
            t.data_type = f.value
        elif n == _T_NAME and f.wire == 2:
            t.name = _text(buf, f)
        elif n == _T_RAW and f.wire == 2:
            t.raw = f  # last occurrence wins for a singular bytes field
        elif n in _TYPED_FIELDS:
            t.typed.setdefault(n, []).append(f)
        elif n == _T_EXTERNAL and f.wire == 2:
            key = value = ""
            for g in _fields(buf, f.start, f.end):
                if g.number == 1 and g.wire == 2:
                    key = _text(buf, g)
                elif g.number == 2 and g.wire == 2:
                    value = _text(buf, g)
            t.external[key] = value
        elif n == _T_LOCATION and f.wire == 0:
            t.data_location = f.value
    t.dims = tuple(dims)
    return t


def _location(
    buf, start: int, end: int, graph: str, base_dir: Path | None, name: str | None = None
) -> TensorLocation:
    t = _parse_tensor(buf, start, end)
    itemsize = ITEMSIZE.get(t.data_type, 0)
    numel = int(np.prod(t.dims, dtype=np.int64)) if t.dims else 1
    stored = (numel + 1) // 2 if t.data_type in PACKED_4BIT else numel * itemsize
    common = dict(
        name=t.name if name is None else name,
        data_type=t.data_type,
        dims=t.dims,
        itemsize=itemsize,
        graph=graph,
    )
    if t.data_location == 1 or "location" in t.external:
        location = t.external.get("location", "")
        offset = int(t.external.get("offset") or 0)
        if t.external.get("length"):
            length = int(t.external["length"])
        elif itemsize:
            length = stored  # what ONNX Runtime reads: the tensor's own size
        elif base_dir is not None and (base_dir / location).is_file():
            length = (base_dir / location).stat().st_size - offset
        else:
            length = 0
        return TensorLocation(
            file=location, offset=offset, length=length, encoding="external", **common
        )
    if t.raw is not None:
        return TensorLocation(
            file=None,
            offset=t.raw.start,
            length=t.raw.end - t.raw.start,
            encoding="raw_data",
            **common,
        )
    for number, enc, width, wire in (
        (_T_FLOAT, "float_data", 4, 5),
        (_T_DOUBLE, "double_data", 8, 1),
    ):
        occ = t.typed.get(number)
        if not occ:
            continue
        if len(occ) == 1 and occ[0].wire == 2:
            f = occ[0]
            return TensorLocation(
                file=None, offset=f.start, length=f.end - f.start, encoding=enc, **common
            )
        # unpacked or split: not one contiguous run of words; to_flippable rewrites it
        return TensorLocation(
            file=None,
            offset=occ[0].start,
            length=len(occ) * width if occ[0].wire == wire else sum(f.end - f.start for f in occ),
            encoding=enc + "_unpacked",
            **common,
        )
    for number, enc in (
        (_T_INT32, "int32_data"),
        (_T_INT64, "int64_data"),
        (_T_UINT64, "uint64_data"),
        (_T_STRING, "string_data"),
    ):
        occ = t.typed.get(number)
        if occ:
            return TensorLocation(
                file=None,
                offset=occ[0].start,
                length=sum(f.end - f.start for f in occ),
                encoding=enc,
                **common,
            )
    return TensorLocation(file=None, offset=start, length=0, encoding="empty", **common)


# --- the walk --------------------------------------------------------------------------------


@dataclass
class _Visitor:
    on_tensor: Callable[[int, int, str, str | None], None] | None = None  # start, end, graph
    on_graph: Callable[[int, int, str], None] | None = None


def _walk_model(buf, visitor: _Visitor) -> None:
    end = len(buf)
    seen_graph = False
    training = 0
    for f in _fields(buf, 0, end):
        if f.number == _MODEL_GRAPH and f.wire == 2:
            _walk_graph(buf, f.start, f.end, "main", visitor)
            seen_graph = True
        elif f.number == _MODEL_TRAINING and f.wire == 2:
            for g in _fields(buf, f.start, f.end):
                if g.number in _TRAINING_GRAPHS and g.wire == 2:
                    path = f"training_info[{training}]/{_TRAINING_GRAPHS[g.number]}"
                    _walk_graph(buf, g.start, g.end, path, visitor)
            training += 1
    if not seen_graph:
        raise _bad("no graph field (is this an ONNX model?)")


def _walk_graph(buf, start: int, end: int, path: str, visitor: _Visitor) -> None:
    if visitor.on_graph:
        visitor.on_graph(start, end, path)
    node_index = 0
    for f in _fields(buf, start, end):
        if f.wire != 2:
            continue
        if f.number == _GRAPH_INIT and visitor.on_tensor:
            visitor.on_tensor(f.start, f.end, path, None)
        elif f.number == _GRAPH_SPARSE and visitor.on_tensor:
            for g in _fields(buf, f.start, f.end):
                if g.number == _SPARSE_VALUES and g.wire == 2:
                    visitor.on_tensor(g.start, g.end, path, "sparse")
        elif f.number == _GRAPH_NODE:
            _walk_node(buf, f.start, f.end, path, node_index, visitor)
            node_index += 1


def _node_label(buf, start: int, end: int, index: int) -> tuple[str, list[_Field]]:
    name = op = ""
    attrs = []
    for f in _fields(buf, start, end):
        if f.number == _NODE_NAME and f.wire == 2:
            name = _text(buf, f)
        elif f.number == _NODE_OP and f.wire == 2:
            op = _text(buf, f)
        elif f.number == _NODE_ATTR and f.wire == 2:
            attrs.append(f)
    return name or f"{op or 'node'}_{index}", attrs


def _walk_node(buf, start: int, end: int, path: str, index: int, visitor: _Visitor) -> None:
    label, attrs = _node_label(buf, start, end, index)
    for a in attrs:
        aname = ""
        graphs = []
        for g in _fields(buf, a.start, a.end):
            if g.number == _ATTR_NAME and g.wire == 2:
                aname = _text(buf, g)
            elif g.number in (_ATTR_G, _ATTR_GRAPHS) and g.wire == 2:
                graphs.append(g)
        k = 0
        for g in graphs:
            suffix = aname if g.number == _ATTR_G else f"{aname}[{k}]"
            k += g.number == _ATTR_GRAPHS
            _walk_graph(buf, g.start, g.end, f"{path}/{label}/{suffix}", visitor)


def locate_initializers(
    model_bytes: bytes | bytearray | memoryview, base_dir: str | Path | None = None
) -> list[TensorLocation]:
    """Every initializer (and sparse initializer's values) with the span of its data bytes.

    `base_dir` (the model's folder) is only used for external tensors whose entry has no
    length and whose type has no fixed width. Raises QtoolError on malformed protobuf.
    """
    buf = memoryview(model_bytes) if not isinstance(model_bytes, memoryview) else model_bytes
    base = Path(base_dir) if base_dir is not None else None
    out: list[TensorLocation] = []

    def on_tensor(start: int, end: int, graph: str, kind: str | None) -> None:
        out.append(_location(buf, start, end, graph, base))

    try:
        _walk_model(buf, _Visitor(on_tensor=on_tensor))
    except (IndexError, ValueError) as exc:
        raise _bad(str(exc)) from exc
    return out


def graph_nodes(model_bytes: bytes | bytearray | memoryview) -> dict[str, bytes]:
    """Graph path -> a serialized GraphProto holding only that graph's nodes and name.

    Parsing these small messages with onnx gives the graph structure (for roles) without
    copying the initializer payloads of a large model.
    """
    buf = memoryview(model_bytes)
    graphs: dict[str, bytes] = {}

    def on_graph(start: int, end: int, path: str) -> None:
        parts = []
        for f in _fields(buf, start, end):
            if f.number in (_GRAPH_NODE, _GRAPH_NAME):
                parts.append(bytes(buf[f.tag_start : f.end]))
        graphs[path] = b"".join(parts)

    _walk_model(buf, _Visitor(on_graph=on_graph))
    return graphs


# --- conversion of varint / unpacked tensors to raw_data ------------------------------------


def _rewrite(
    buf, start: int, end: int, kind: str, path: str, fn: Callable, node_index: int = 0
) -> bytes | None:
    """Rebuild a message with `fn(tensor_start, tensor_end, graph) -> bytes | None` applied to
    every initializer; unchanged parts are copied byte for byte. None: nothing changed."""
    pieces: list = []
    changed = False
    label = ""
    if kind == "node":
        label, _ = _node_label(buf, start, end, node_index)
    index = 0
    for f in _fields(buf, start, end):
        new = None
        if f.wire == 2:
            if kind == "model" and f.number == _MODEL_GRAPH:
                new = _rewrite(buf, f.start, f.end, "graph", "main", fn)
            elif kind == "graph" and f.number == _GRAPH_INIT:
                new = fn(f.start, f.end, path)
            elif kind == "graph" and f.number == _GRAPH_NODE:
                new = _rewrite(buf, f.start, f.end, "node", path, fn, index)
                index += 1
            elif kind == "node" and f.number == _NODE_ATTR:
                new = _rewrite(buf, f.start, f.end, "attr", f"{path}/{label}", fn)
            elif kind == "attr" and f.number in (_ATTR_G, _ATTR_GRAPHS):
                aname = next(
                    (_text(buf, g) for g in _fields(buf, start, end) if g.number == _ATTR_NAME),
                    "",
                )
                if f.number == _ATTR_GRAPHS:
                    sub = f"{path}/{aname}[{index}]"
                    index += 1
                else:
                    sub = f"{path}/{aname}"
                new = _rewrite(buf, f.start, f.end, "graph", sub, fn)
        if new is None:
            pieces.append(buf[f.tag_start : f.end])
        else:
            changed = True
            pieces.append(buf[f.tag_start : f.start - _len_prefix_size(buf, f)])
            pieces.append(_encode_varint(len(new)))
            pieces.append(new)
    return b"".join(bytes(p) for p in pieces) if changed else None


def _len_prefix_size(buf, f: _Field) -> int:
    """Bytes taken by the length prefix of a wire-type-2 field."""
    _, pos = _varint(buf, f.tag_start, f.start)
    return f.start - pos


def _tensor_to_raw(buf, start: int, end: int) -> bytes | None:
    """A TensorProto body with its varint / unpacked typed data replaced by raw_data."""
    t = _parse_tensor(buf, start, end)
    if t.raw is not None or t.data_location == 1 or "location" in t.external:
        return None
    raw = None
    drop: set[int] = set()
    if t.typed.get(_T_FLOAT) and not (
        len(t.typed[_T_FLOAT]) == 1 and t.typed[_T_FLOAT][0].wire == 2
    ):
        raw = b"".join(bytes(buf[f.start : f.end]) for f in t.typed[_T_FLOAT])
        drop = {_T_FLOAT}
    elif t.typed.get(_T_DOUBLE) and not (
        len(t.typed[_T_DOUBLE]) == 1 and t.typed[_T_DOUBLE][0].wire == 2
    ):
        raw = b"".join(bytes(buf[f.start : f.end]) for f in t.typed[_T_DOUBLE])
        drop = {_T_DOUBLE}
    elif not t.typed.get(_T_FLOAT) and not t.typed.get(_T_DOUBLE):
        for number in (_T_INT32, _T_INT64, _T_UINT64):
            occ = t.typed.get(number)
            if not occ:
                continue
            storage = _VARINT_STORAGE.get(t.data_type)
            if storage is None:
                return None
            values = [v for f in occ for v in _varints(buf, f)]
            if number == _T_UINT64:
                arr = np.array(values, dtype=np.uint64)
            else:
                arr = np.array(
                    [v - (1 << 64) if v >= 1 << 63 else v for v in values], dtype=np.int64
                )
            raw = arr.astype(storage).tobytes()
            drop = {number}
            break
    if raw is None:
        return None
    pieces = []
    inserted = False
    for f in _fields(buf, start, end):
        if f.number in drop:
            if not inserted:
                pieces.append(bytes([(_T_RAW << 3) | 2]) + _encode_varint(len(raw)) + raw)
                inserted = True
            continue
        pieces.append(bytes(buf[f.tag_start : f.end]))
    return b"".join(pieces)


def rewrite_tensors(
    model_bytes: bytes | bytearray, fn: Callable[[memoryview, int, int, str], bytes | None]
) -> bytes:
    """Apply `fn(buf, start, end, graph)` to every initializer body; length prefixes of the
    enclosing messages are recomputed, every other byte is copied unchanged."""
    buf = memoryview(model_bytes)
    try:
        new = _rewrite(buf, 0, len(buf), "model", "", lambda s, e, g: fn(buf, s, e, g))
    except (IndexError, ValueError) as exc:
        raise _bad(str(exc)) from exc
    return bytes(model_bytes) if new is None else new


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
        if only is not None and (graph, _parse_tensor(buf, start, end).name) not in only:
            return None
        new = _tensor_to_raw(buf, start, end)
        if new is not None:
            converted.append(_parse_tensor(buf, start, end).name)
        return new

    return rewrite_tensors(model_bytes, fn), converted


def tensor_bodies(model_bytes: bytes | bytearray) -> dict[tuple[str, str], bytes]:
    """(graph, name) -> serialized TensorProto of every initializer (for exact restores)."""
    buf = memoryview(model_bytes)
    out: dict[tuple[str, str], bytes] = {}

    def on_tensor(start: int, end: int, graph: str, kind: str | None) -> None:
        if kind is None:
            out[(graph, _parse_tensor(buf, start, end).name)] = bytes(buf[start:end])

    _walk_model(buf, _Visitor(on_tensor=on_tensor))
    return out


def replace_tensors(model_bytes: bytes | bytearray, bodies: dict[tuple[str, str], bytes]) -> bytes:
    """Put back the given TensorProto bodies, matched by (graph, name)."""

    def fn(buf, start: int, end: int, graph: str) -> bytes | None:
        return bodies.get((graph, _parse_tensor(buf, start, end).name))

    return rewrite_tensors(model_bytes, fn)


def external_files(locations: list[TensorLocation]) -> list[str]:
    """External-data file names referenced by the given locations, in first-use order."""
    seen: dict[str, None] = {}
    for loc in locations:
        if loc.file is not None:
            seen.setdefault(os.path.normpath(loc.file))
    return list(seen)
