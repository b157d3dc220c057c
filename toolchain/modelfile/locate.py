"""Where each initializer's data bytes sit inside a serialized ONNX model.

The protobuf library parses messages but gives no byte offsets, so this module walks the
wire format itself (`qtool.modelfile.wire`): ModelProto -> GraphProto -> TensorProto, and the
subgraphs held by If/Loop/Scan node attributes, sparse initializers and training graphs.
Flips, checksums and packaging then address the stored bytes directly, without parsing the
whole model into objects or re-serialising it. Re-encoding tensors (varint -> raw_data) is
`qtool.modelfile.rewrite`.

Only the few fields needed for the walk are decoded; large payloads (raw_data, packed
float_data) are skipped by their length prefix, so a 100 MB model is walked in milliseconds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from qtool.modelfile.wire import (
    FIXED32,
    FIXED64,
    LENGTH_DELIMITED,
    VARINT,
    Field,
    as_signed64,
    fields,
    malformed,
    text,
    varints,
)

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
VARINT_ENCODINGS = {"int32_data", "int64_data", "uint64_data"}
IN_PLACE_ENCODINGS = {"raw_data", "float_data", "double_data", "external"}

# Field numbers of the onnx.proto3 messages walked here (also used by `rewrite`).
MODEL_GRAPH, MODEL_TRAINING = 7, 20
TRAINING_GRAPHS = {1: "initialization", 2: "algorithm"}
GRAPH_NODE, GRAPH_NAME, GRAPH_INIT, GRAPH_SPARSE = 1, 2, 5, 15
NODE_NAME, NODE_OP, NODE_ATTR = 3, 4, 5
ATTR_NAME, ATTR_G, ATTR_GRAPHS = 1, 6, 11
SPARSE_VALUES = 1
T_DIMS, T_TYPE, T_FLOAT, T_INT32, T_STRING, T_INT64 = 1, 2, 4, 5, 6, 7
T_NAME, T_RAW, T_DOUBLE, T_UINT64, T_EXTERNAL, T_LOCATION = 8, 9, 10, 11, 13, 14
TYPED_FIELDS = {T_FLOAT, T_INT32, T_STRING, T_INT64, T_DOUBLE, T_UINT64}
# fixed-width typed fields: field number -> (encoding name, word bytes, unpacked wire type)
FIXED_WIDTH_FIELDS = {T_FLOAT: ("float_data", 4, FIXED32), T_DOUBLE: ("double_data", 8, FIXED64)}
VARINT_FIELDS = {T_INT32: "int32_data", T_INT64: "int64_data", T_UINT64: "uint64_data"}


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
        return math.prod(self.dims)  # Python ints: no int64 overflow on hostile dims


# --- tensors ---------------------------------------------------------------------------------


@dataclass
class TensorFields:
    """The fields of one serialized TensorProto, payloads as spans (never copied)."""

    name: str = ""
    data_type: int = 0
    dims: tuple[int, ...] = ()
    raw: Field | None = None
    typed: dict[int, list[Field]] = field(default_factory=dict)  # number -> occurrences
    external: dict[str, str] = field(default_factory=dict)
    data_location: int = 0

    @property
    def is_external(self) -> bool:
        return self.data_location == 1 or "location" in self.external

    def packed(self, number: int) -> Field | None:
        """The one packed occurrence of a fixed-width typed field, if stored that way."""
        occ = self.typed.get(number)
        return occ[0] if occ and len(occ) == 1 and occ[0].wire == LENGTH_DELIMITED else None


def parse_tensor(buf, start: int, end: int) -> TensorFields:
    t = TensorFields()
    dims: list[int] = []
    for f in fields(buf, start, end):
        n = f.number
        if n == T_DIMS:
            dims.extend(as_signed64(v) for v in varints(buf, f))
        elif n == T_TYPE and f.wire == VARINT:
            t.data_type = f.value
        elif n == T_NAME and f.wire == LENGTH_DELIMITED:
            t.name = text(buf, f)
        elif n == T_RAW and f.wire == LENGTH_DELIMITED:
            t.raw = f  # last occurrence wins for a singular bytes field
        elif n in TYPED_FIELDS:
            t.typed.setdefault(n, []).append(f)
        elif n == T_EXTERNAL and f.wire == LENGTH_DELIMITED:
            key, value = _string_entry(buf, f)
            t.external[key] = value
        elif n == T_LOCATION and f.wire == VARINT:
            t.data_location = f.value
    t.dims = tuple(dims)
    return t


def _string_entry(buf, f: Field) -> tuple[str, str]:
    """A StringStringEntryProto (key 1, value 2)."""
    key = value = ""
    for g in fields(buf, f.start, f.end):
        if g.number == 1 and g.wire == LENGTH_DELIMITED:
            key = text(buf, g)
        elif g.number == 2 and g.wire == LENGTH_DELIMITED:
            value = text(buf, g)
    return key, value


def _location(buf, start: int, end: int, graph: str, base_dir: Path | None) -> TensorLocation:
    t = parse_tensor(buf, start, end)
    itemsize = ITEMSIZE.get(t.data_type, 0)
    common = dict(name=t.name, data_type=t.data_type, dims=t.dims, itemsize=itemsize, graph=graph)
    if t.is_external:
        location = t.external.get("location", "")
        offset = _external_int(t, "offset") or 0
        length = _external_length(t, itemsize, base_dir, location, offset)
        return TensorLocation(
            file=location, offset=offset, length=length, encoding="external", **common
        )
    offset, length, encoding = _inline_span(t, start)
    return TensorLocation(file=None, offset=offset, length=length, encoding=encoding, **common)


def _external_int(t: TensorFields, key: str) -> int | None:
    """An external-data `offset` or `length` entry: a non-negative decimal integer, or None."""
    text = t.external.get(key)
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit()):
        raise malformed(
            f"tensor {t.name!r} has external-data {key} {text[:40]!r}, not a non-negative integer"
        )
    return int(text)


def _external_length(
    t: TensorFields, itemsize: int, base_dir: Path | None, location: str, offset: int
) -> int:
    length = _external_int(t, "length")
    if length is not None:
        return length
    if itemsize:  # what ONNX Runtime reads: the tensor's own size
        numel = math.prod(t.dims)
        return (numel + 1) // 2 if t.data_type in PACKED_4BIT else numel * itemsize
    if base_dir is not None and (base_dir / location).is_file():
        return max((base_dir / location).stat().st_size - offset, 0)
    return 0


def _inline_span(t: TensorFields, start: int) -> tuple[int, int, str]:
    """(offset, length, encoding) of a tensor's data inside the model file."""
    if t.raw is not None:
        return t.raw.start, t.raw.end - t.raw.start, "raw_data"
    for number, (enc, width, wire) in FIXED_WIDTH_FIELDS.items():
        occ = t.typed.get(number)
        if not occ:
            continue
        packed = t.packed(number)
        if packed is not None:
            return packed.start, packed.end - packed.start, enc
        # unpacked or split: not one contiguous run of words; rewrite.to_flippable converts it
        if occ[0].wire == wire:
            return occ[0].start, len(occ) * width, enc + "_unpacked"
        return occ[0].start, sum(f.end - f.start for f in occ), enc + "_unpacked"
    for number, enc in (*VARINT_FIELDS.items(), (T_STRING, "string_data")):
        occ = t.typed.get(number)
        if occ:
            return occ[0].start, sum(f.end - f.start for f in occ), enc
    return start, 0, "empty"


# --- the walk --------------------------------------------------------------------------------


@dataclass
class _Visitor:
    on_tensor: Callable[[int, int, str, str | None], None] | None = None  # start, end, graph
    on_graph: Callable[[int, int, str], None] | None = None


def _walk(buf, visitor: _Visitor) -> None:
    """Visit every graph and initializer; any decoding failure is one QtoolError."""
    try:
        _walk_model(buf, visitor)
    except (IndexError, ValueError) as exc:
        raise malformed(str(exc)) from exc


def _walk_model(buf, visitor: _Visitor) -> None:
    seen_graph = False
    training = 0
    for f in fields(buf, 0, len(buf)):
        if f.wire != LENGTH_DELIMITED:
            continue
        if f.number == MODEL_GRAPH:
            _walk_graph(buf, f.start, f.end, "main", visitor)
            seen_graph = True
        elif f.number == MODEL_TRAINING:
            for g in fields(buf, f.start, f.end):
                if g.number in TRAINING_GRAPHS and g.wire == LENGTH_DELIMITED:
                    path = f"training_info[{training}]/{TRAINING_GRAPHS[g.number]}"
                    _walk_graph(buf, g.start, g.end, path, visitor)
            training += 1
    if not seen_graph:
        raise malformed("no graph field (is this an ONNX model?)")


def _walk_graph(buf, start: int, end: int, path: str, visitor: _Visitor) -> None:
    if visitor.on_graph:
        visitor.on_graph(start, end, path)
    node_index = 0
    for f in fields(buf, start, end):
        if f.wire != LENGTH_DELIMITED:
            continue
        if f.number == GRAPH_INIT and visitor.on_tensor:
            visitor.on_tensor(f.start, f.end, path, None)
        elif f.number == GRAPH_SPARSE and visitor.on_tensor:
            for g in fields(buf, f.start, f.end):
                if g.number == SPARSE_VALUES and g.wire == LENGTH_DELIMITED:
                    visitor.on_tensor(g.start, g.end, path, "sparse")
        elif f.number == GRAPH_NODE:
            _walk_node(buf, f.start, f.end, path, node_index, visitor)
            node_index += 1


def node_label(buf, start: int, end: int, index: int) -> tuple[str, list[Field]]:
    """A node's name (or `<op>_<index>` when unnamed) and its attribute fields."""
    name = op = ""
    attrs = []
    for f in fields(buf, start, end):
        if f.wire != LENGTH_DELIMITED:
            continue
        if f.number == NODE_NAME:
            name = text(buf, f)
        elif f.number == NODE_OP:
            op = text(buf, f)
        elif f.number == NODE_ATTR:
            attrs.append(f)
    return name or f"{op or 'node'}_{index}", attrs


def subgraph_paths(buf, attr: Field, node_path: str) -> list[tuple[Field, str]]:
    """The graphs an attribute holds (`g`, or each of `graphs`) with their graph paths."""
    name = ""
    graphs = []
    for g in fields(buf, attr.start, attr.end):
        if g.number == ATTR_NAME and g.wire == LENGTH_DELIMITED:
            name = text(buf, g)
        elif g.number in (ATTR_G, ATTR_GRAPHS) and g.wire == LENGTH_DELIMITED:
            graphs.append(g)
    out, k = [], 0
    for g in graphs:
        suffix = name if g.number == ATTR_G else f"{name}[{k}]"
        k += g.number == ATTR_GRAPHS
        out.append((g, f"{node_path}/{suffix}"))
    return out


def _walk_node(buf, start: int, end: int, path: str, index: int, visitor: _Visitor) -> None:
    label, attrs = node_label(buf, start, end, index)
    for a in attrs:
        for g, sub in subgraph_paths(buf, a, f"{path}/{label}"):
            _walk_graph(buf, g.start, g.end, sub, visitor)


# --- what callers ask ------------------------------------------------------------------------


def locate_initializers(
    model_bytes: bytes | bytearray | memoryview, base_dir: str | Path | None = None
) -> list[TensorLocation]:
    """Every initializer (and sparse initializer's values) with the span of its data bytes.

    `base_dir` (the model's folder) is only used for external tensors whose entry has no
    length and whose type has no fixed width. Raises QtoolError on malformed protobuf.
    """
    buf = memoryview(model_bytes)
    base = Path(base_dir) if base_dir is not None else None
    out: list[TensorLocation] = []

    def on_tensor(start: int, end: int, graph: str, kind: str | None) -> None:
        out.append(_location(buf, start, end, graph, base))

    _walk(buf, _Visitor(on_tensor=on_tensor))
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
        for f in fields(buf, start, end):
            if f.number in (GRAPH_NODE, GRAPH_NAME):
                parts.append(bytes(buf[f.tag_start : f.end]))
        graphs[path] = b"".join(parts)

    _walk(buf, _Visitor(on_graph=on_graph))
    return graphs


def tensor_bodies(model_bytes: bytes | bytearray) -> dict[tuple[str, str], bytes]:
    """(graph, name) -> serialized TensorProto of every initializer (for exact restores)."""
    buf = memoryview(model_bytes)
    out: dict[tuple[str, str], bytes] = {}

    def on_tensor(start: int, end: int, graph: str, kind: str | None) -> None:
        if kind is None:
            out[(graph, parse_tensor(buf, start, end).name)] = bytes(buf[start:end])

    _walk(buf, _Visitor(on_tensor=on_tensor))
    return out


def external_files(locations: list[TensorLocation]) -> list[str]:
    """External-data file names referenced by the given locations, in first-use order."""
    seen: dict[str, None] = {}
    for loc in locations:
        if loc.file is not None:
            seen.setdefault(os.path.normpath(loc.file))
    return list(seen)
