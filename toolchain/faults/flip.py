"""Bit flips in the stored bytes of an ONNX model's initializers, logged so they can be undone.

A flip changes one bit of one stored word of an initializer: inside `raw_data`, a packed
`float_data`/`double_data` field, or an external-data file. Nothing else in the file changes,
so `cmp -l original flipped` lists exactly the flipped bytes. Which tensors are eligible is
decided by graph role (weights, biases, quantisation parameters), never by names.

The model stays a bytearray throughout: flipping is XOR at byte offsets found by
`qtool.modelfile.locate`, so injection costs microseconds per bit, and campaigns can flip, run and
flip back without ever re-serialising the model.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from qtool import __version__
from qtool.errors import QtoolError, WorkFailed
from qtool.modelfile.load import external_data_path
from qtool.modelfile.locate import (
    ITEMSIZE,
    PACKED_4BIT,
    TensorLocation,
    graph_nodes,
    locate_initializers,
    replace_tensors,
    tensor_bodies,
    to_flippable,
)
from qtool.modelfile.roles import initializer_roles
from qtool.modelfile.summary import dtype_name
from qtool.outputs import atomic_write, check_output_path

MANIFEST_FORMAT = "qtool-flip-manifest/1"
TARGETS = {"weights": "weight", "biases": "bias", "qparams": "qparam", "others": "other"}
FAULTS = ("flip", "set", "reset")
NAMED_POSITIONS = ("any", "sign", "exponent", "exponent-msb", "mantissa", "msb", "lsb")

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
# float layouts: data type -> (sign bit, lowest exponent bit, highest exponent bit) of a word
# (4-bit floats: of each nibble; the second nibble is the same shifted by 4).
_FLOAT_LAYOUT = {
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


# --- which bits ------------------------------------------------------------------------------


def parse_positions(spec: str) -> list[str | int]:
    """`any`, named classes and bit numbers, comma-separated; bad input is a QtoolError."""
    items: list[str | int] = []
    for raw in (spec or "").split(","):
        token = raw.strip().lower()
        if token in NAMED_POSITIONS:
            items.append(token)
        elif token.isdigit() and int(token) < 64:
            items.append(int(token))
        else:
            raise QtoolError(
                f"bad --positions {spec!r}: use any, sign, exponent, exponent-msb, mantissa, "
                "msb, lsb or bit numbers 0-63 (bit 0 = least significant bit of the stored "
                "little-endian word), comma-separated"
            )
    return items


def bit_positions(data_type: int, spec: list[str | int]) -> tuple[int, ...]:
    """Bit numbers within one stored word of this data type that the spec selects."""
    word = _WORD[data_type][0]
    width = 8 * word
    nibbles = (0, 4) if data_type in PACKED_4BIT else (0,)
    layout = _FLOAT_LAYOUT.get(data_type)
    chosen: set[int] = set()
    for item in spec:
        if isinstance(item, int):
            if item < width:
                chosen.add(item)
            continue
        if item == "any":
            chosen.update(range(width))
            continue
        for base in nibbles:
            top = base + (3 if data_type in PACKED_4BIT else width - 1)
            if item == "msb":
                chosen.add(top)
            elif item == "lsb":
                chosen.add(base)
            elif layout is not None:
                sign, lo, hi = layout
                if item == "sign":
                    chosen.add(base + sign)
                elif item == "exponent":
                    chosen.update(range(base + lo, base + hi + 1))
                elif item == "exponent-msb":
                    chosen.add(base + hi)
                elif item == "mantissa":
                    chosen.update(range(base, base + lo))
            elif item == "sign" and data_type in _SIGNED_INT:
                chosen.add(top)  # two's complement: the sign bit is the msb
    return tuple(sorted(chosen))


# --- which tensors ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """An eligible tensor: where its words are and which bits of each word may be hit."""

    loc: TensorLocation
    role: str
    word: int  # bytes per stored word
    positions: tuple[int, ...]

    @property
    def words(self) -> int:
        return self.loc.length // self.word

    @property
    def key(self) -> tuple[str, str]:
        return (self.loc.graph, self.loc.name)


def graph_roles(model_bytes: bytes | bytearray) -> tuple[dict, dict]:
    """(graph, name) -> role, and (graph, name) -> names of the nodes that read it.

    A subgraph's nodes may use tensors of the graphs around it, so each graph's roles take
    the nodes of its subgraphs into account too.
    """
    skeletons = {
        path: onnx.GraphProto.FromString(data) for path, data in graph_nodes(model_bytes).items()
    }
    roles: dict[tuple[str, str], str] = {}
    readers: dict[tuple[str, str], list[str]] = {}
    for path in skeletons:
        merged = onnx.GraphProto()
        for sub, graph in skeletons.items():
            if sub == path or sub.startswith(path + "/"):
                merged.node.extend(graph.node)
        for name, role in initializer_roles(merged).items():
            roles[(path, name)] = role
        for node in merged.node:
            for name in node.input:
                readers.setdefault((path, name), []).append(node.name or node.op_type)
    return roles, readers


def select_targets(
    model_bytes: bytes | bytearray,
    targets: str = "weights",
    layers: str | None = None,
    positions: str = "any",
    locations: list[TensorLocation] | None = None,
) -> list[Target]:
    """Eligible tensors (by role, layer regex and bit positions) with their bit positions.

    Tensors whose encoding is not fixed-width in place (varint int32_data...) are included
    only as candidates; call `prepare_bytes` first to convert them.
    """
    wanted = parse_targets(targets)
    spec = parse_positions(positions)
    try:
        pattern = re.compile(layers) if layers else None
    except re.error as exc:
        raise QtoolError(f"bad --layers regular expression {layers!r}: {exc}") from exc
    locations = locate_initializers(model_bytes) if locations is None else locations
    roles, readers = graph_roles(model_bytes)
    out: list[Target] = []
    role_matches = 0
    for loc in locations:
        if loc.data_type not in _WORD or loc.length == 0:
            continue
        role = roles.get((loc.graph, loc.name), "other")
        if wanted is not None and role not in wanted:
            continue
        role_matches += 1
        if pattern is not None:
            names = [loc.name, *readers.get((loc.graph, loc.name), [])]
            if not any(pattern.search(n) for n in names):
                continue
        bits = bit_positions(loc.data_type, spec)
        if bits:
            out.append(Target(loc, role, _WORD[loc.data_type][0], bits))
    if pattern is not None and role_matches and not any(True for _ in out):
        raise QtoolError(
            f"--layers {layers!r} matches none of the {role_matches} {targets} tensors "
            "(it is searched in tensor names and the names of the nodes reading them); "
            "see `qtool inspect` for the names"
        )
    return out


def parse_targets(spec: str) -> set[str] | None:
    """`weights,biases` -> {"weight", "bias"}; `all` -> None (every numeric initializer)."""
    roles: set[str] = set()
    for raw in (spec or "").split(","):
        token = raw.strip().lower()
        if token == "all":
            return None
        if token not in TARGETS:
            raise QtoolError(
                f"bad --targets {spec!r}: use weights, biases, qparams, others or all "
                "(comma-separated)"
            )
        roles.add(TARGETS[token])
    return roles


# --- the eligible bit space ------------------------------------------------------------------


@dataclass
class BitSpace:
    """All eligible bits as one index range, without materialising a list of them.

    For `flip`, tensor t owns `words * len(positions)` consecutive indices. For `set`/`reset`
    only bits whose value would change are eligible, so the space is made of blocks
    (tensor, bit position) holding the words whose bit differs from the target value.
    """

    targets: list[Target]
    fault: str
    block_target: np.ndarray  # per block: target index
    block_bit: np.ndarray  # per block: bit position (-1: all positions of the tensor)
    block_start: np.ndarray  # cumulative start index of each block
    total: int

    def per_target(self) -> np.ndarray:
        sizes = np.diff(np.append(self.block_start, self.total))
        return np.bincount(self.block_target, weights=sizes, minlength=len(self.targets))


def _word_view(buf, t: Target) -> np.ndarray:
    dtype = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[t.word]
    return np.frombuffer(
        buf, dtype=np.dtype(dtype).newbyteorder("<"), count=t.words, offset=t.loc.offset
    )


def bit_space(targets: list[Target], buffers: dict, fault: str = "flip") -> BitSpace:
    """Index arithmetic over the concatenated eligible bits of all targets."""
    if fault not in FAULTS:
        raise QtoolError(f"bad --fault {fault!r}: use flip, set or reset")
    b_target, b_bit, sizes = [], [], []
    for i, t in enumerate(targets):
        if fault == "flip":
            b_target.append(i)
            b_bit.append(-1)
            sizes.append(t.words * len(t.positions))
            continue
        words = _word_view(buffers[t.loc.file], t)
        for p in t.positions:
            ones = int(np.count_nonzero((words >> np.uint64(p) if t.word == 8 else words >> p) & 1))
            count = t.words - ones if fault == "set" else ones
            if count:
                b_target.append(i)
                b_bit.append(p)
                sizes.append(count)
    sizes_arr = np.array(sizes, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes_arr)[:-1]]).astype(np.int64)
    return BitSpace(
        targets,
        fault,
        np.array(b_target, dtype=np.int64),
        np.array(b_bit, dtype=np.int64),
        starts,
        int(sizes_arr.sum()) if len(sizes_arr) else 0,
    )


def sample_indices(rng: np.random.Generator, total: int, n: int) -> np.ndarray:
    """n distinct integers uniform in [0, total), sorted; O(n) memory for a sparse draw."""
    if n > total:
        raise QtoolError(f"cannot flip {n} distinct bits: only {total} bits are eligible")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if 2 * n >= total:
        return np.sort(rng.permutation(total)[:n]).astype(np.int64)
    chosen = np.unique(rng.integers(0, total, size=n, dtype=np.int64))
    while len(chosen) < n:
        extra = rng.integers(0, total, size=n - len(chosen), dtype=np.int64)
        chosen = np.unique(np.concatenate([chosen, extra]))
    return chosen


@dataclass(frozen=True)
class Flip:
    """One logical flip: target index, word index inside the tensor, bit within the word."""

    target: int
    word: int
    bit: int


def draw_flips(space: BitSpace, n: int, rng: np.random.Generator, buffers: dict) -> list[Flip]:
    """n distinct eligible bits, uniform over the whole space (so size-weighted by tensor)."""
    idx = sample_indices(rng, space.total, n)
    block = np.searchsorted(space.block_start, idx, side="right") - 1
    flips: list[Flip] = []
    for b in np.unique(block):
        local = idx[block == b] - space.block_start[b]
        ti = int(space.block_target[b])
        t = space.targets[ti]
        p = int(space.block_bit[b])
        if p < 0:
            npos = len(t.positions)
            for j in local.tolist():
                flips.append(Flip(ti, j // npos, t.positions[j % npos]))
        else:
            words = _word_view(buffers[t.loc.file], t)
            bitval = (words >> np.uint64(p) if t.word == 8 else words >> p) & 1
            match = np.flatnonzero(bitval == (0 if space.fault == "set" else 1))
            for j in local.tolist():
                flips.append(Flip(ti, int(match[j]), p))
    flips.sort(key=lambda f: (f.target, f.word, f.bit))
    return flips


def byte_position(t: Target, word: int, bit: int) -> tuple[int, int]:
    """(byte offset in the tensor's file, bit within that byte) of a word's bit."""
    return t.loc.offset + word * t.word + bit // 8, bit % 8


def xor_flips(buffers: dict, targets: list[Target], flips: list[Flip]) -> None:
    """Toggle the bits in place (applying twice restores the bytes)."""
    for f in flips:
        t = targets[f.target]
        off, b = byte_position(t, f.word, f.bit)
        buffers[t.loc.file][off] ^= 1 << b


# --- values for the log ----------------------------------------------------------------------


def decode_word(data_type: int, raw: bytes, bit: int = 0) -> float | int | None:
    """The value of the element a word (or, for 4-bit types, the nibble holding `bit`) holds."""
    kind = _WORD[data_type][1]
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


def element_of(t: Target, word: int, bit: int) -> tuple[int, list[int]]:
    """Flat element index and coordinates of the element a word's bit belongs to."""
    if t.loc.data_type in _COMPLEX:
        flat = word // 2
    elif t.loc.data_type in PACKED_4BIT:
        flat = 2 * word + (1 if bit >= 4 else 0)
    else:
        flat = word
    dims = t.loc.dims
    if dims and 0 <= flat < int(np.prod(dims, dtype=np.int64)):
        coords = [int(c) for c in np.unravel_index(flat, dims)]
    else:
        coords = []
    return flat, coords


def flip_entry(
    t: Target, word: int, bit: int, old_word: bytes, new_word: bytes, old_byte: int, new_byte: int
) -> dict:
    """One manifest entry: where the flipped bit is and what it changed (random or chosen)."""
    off, bit_in_byte = byte_position(t, word, bit)
    flat, coords = element_of(t, word, bit)
    return {
        "tensor": t.loc.name,
        "role": t.role,
        "graph": t.loc.graph,
        "dtype": dtype_name(t.loc.data_type),
        "flat_index": flat,
        "coords": coords,
        "word": word,
        "bit": bit,
        "file": t.loc.file,
        "byte_offset": off,
        "bit_in_byte": bit_in_byte,
        "old_value": decode_word(t.loc.data_type, old_word, bit),
        "new_value": decode_word(t.loc.data_type, new_word, bit),
        "old_byte": old_byte,
        "new_byte": new_byte,
    }


# --- model files -----------------------------------------------------------------------------


@dataclass
class ModelFiles:
    """A model's bytes and its external-data files, as editable buffers."""

    path: Path
    main: bytearray
    external: dict[str, bytearray] = field(default_factory=dict)

    def buffers(self) -> dict:
        return {None: self.main, **self.external}

    def sha256(self) -> dict:
        out = {"": _sha(self.main)}
        out.update({name: _sha(buf) for name, buf in self.external.items()})
        return out


def _sha(data) -> str:
    return hashlib.sha256(data).hexdigest()


def _hash_pair(buf, patches: dict[int, int]) -> tuple[str, str]:
    """sha256 of `buf` and of `buf` with bytes replaced by `patches`, hashed concurrently
    (hashlib releases the GIL) without copying the buffer."""
    view = memoryview(buf)
    with ThreadPoolExecutor(1) as pool:
        source = pool.submit(_sha, view)
        h = hashlib.sha256()
        pos = 0
        for off in sorted(patches):
            h.update(view[pos:off])
            h.update(bytes([patches[off]]))
            pos = off + 1
        h.update(view[pos:])
        return source.result(), h.hexdigest()


def read_model_files(path: str | Path) -> ModelFiles:
    """Read the model and every external-data file it uses, refusing paths outside its folder."""
    path = Path(path)
    if not path.exists():
        raise QtoolError(f"model file {path} does not exist: check the path")
    if path.is_dir():
        raise QtoolError(f"{path} is a directory, not an ONNX model file")
    data = bytearray(path.stat().st_size)
    with open(path, "rb") as fh:
        fh.readinto(data)
    try:
        locations = locate_initializers(data)
        graphs = graph_nodes(data)
        for raw in graphs.values():
            onnx.GraphProto.FromString(raw)
    except QtoolError as exc:
        raise QtoolError(f"{path} is not an ONNX model ({exc})") from exc
    except Exception as exc:  # protobuf DecodeError on garbage
        raise QtoolError(f"{path} is not an ONNX model (cannot parse its graph: {exc})") from exc
    files = ModelFiles(path, data)
    for loc in locations:
        if loc.file is None or loc.file in files.external:
            continue
        target = external_data_path(path, loc.name, loc.file)
        files.external[loc.file] = bytearray(target.read_bytes())
    for loc in locations:
        if loc.file is not None and loc.offset + loc.length > len(files.external[loc.file]):
            raise QtoolError(
                f"{path}: tensor {loc.name!r} claims bytes {loc.offset}..{loc.offset + loc.length}"
                f" of {loc.file}, which has only {len(files.external[loc.file])} bytes"
            )
    return files


def prepare_bytes(
    files: ModelFiles, targets: list[Target], positions: str
) -> tuple[list[Target], list[str], dict]:
    """Convert selected varint-encoded tensors to raw_data (only those) and re-locate.

    Returns the flippable targets, the converted names and their original TensorProto bytes
    (kept in the manifest so --undo can restore the file byte for byte).
    """
    need = {t.key for t in targets if not t.loc.flippable}
    if not need:
        return targets, [], {}
    bodies = tensor_bodies(files.main)
    originals = {k: bodies[k] for k in need if k in bodies}
    new, converted = to_flippable(files.main, only=need)
    files.main[:] = new
    by_key = {(loc.graph, loc.name): loc for loc in locate_initializers(files.main)}
    spec = parse_positions(positions)
    out = []
    for t in targets:
        loc = by_key.get(t.key, t.loc)
        if loc.flippable:
            out.append(Target(loc, t.role, t.word, bit_positions(loc.data_type, spec)))
    return out, converted, originals


# --- injection -------------------------------------------------------------------------------


@dataclass
class FlipSettings:
    bits: int = 1
    seed: int = 0
    targets: str = "weights"
    layers: str | None = None
    positions: str = "any"
    fault: str = "flip"


@dataclass
class Injection:
    """The outcome of `inject`: edited buffers plus the manifest describing every change."""

    files: ModelFiles
    manifest: dict
    targets: list[Target]
    flips: list[Flip]


def inject(path: str | Path, settings: FlipSettings, files: ModelFiles | None = None) -> Injection:
    """Flip `settings.bits` distinct eligible bits of the model at `path`, in memory."""
    files = read_model_files(path) if files is None else files
    targets = select_targets(files.main, settings.targets, settings.layers, settings.positions)
    # sha256 of the main file is computed below together with the flipped one (two threads),
    # unless a conversion changes the bytes first
    source_sha = {name: _sha(buf) for name, buf in files.external.items()}
    if any(not t.loc.flippable for t in targets):
        source_sha[""] = _sha(files.main)
    targets, converted, originals = prepare_bytes(files, targets, settings.positions)
    if not targets:
        raise QtoolError(
            f"{path}: no eligible bits (targets={settings.targets}, positions="
            f"{settings.positions}"
            + (f", layers={settings.layers}" if settings.layers else "")
            + "); try --targets all or other --positions"
        )
    buffers = files.buffers()
    space = bit_space(targets, buffers, settings.fault)
    if settings.bits > space.total:
        raise QtoolError(
            f"--bits {settings.bits} is more than the {space.total} eligible bits of {path} "
            f"(targets={settings.targets}, positions={settings.positions}, "
            f"fault={settings.fault}); lower --bits or widen the selection"
        )
    rng = np.random.default_rng(settings.seed)
    flips = draw_flips(space, settings.bits, rng, buffers)
    patches: dict = {}
    for f in flips:
        t = targets[f.target]
        off, b = byte_position(t, f.word, f.bit)
        per_file = patches.setdefault(t.loc.file, {})
        per_file[off] = per_file.get(off, buffers[t.loc.file][off]) ^ (1 << b)
    flippable_sha, flipped_sha = _hash_pair(files.main, patches.get(None, {}))
    source_sha.setdefault("", flippable_sha)
    flipped_ext = {
        name: _hash_pair(buf, patches[name])[1] if name in patches else source_sha[name]
        for name, buf in files.external.items()
    }
    entries = []
    for f in flips:
        t = targets[f.target]
        buf = buffers[t.loc.file]
        start = t.loc.offset + f.word * t.word
        off, b = byte_position(t, f.word, f.bit)
        old_word = bytes(buf[start : start + t.word])
        old_byte = buf[off]
        buf[off] ^= 1 << b  # eligible bits always change, so set/reset is a toggle too
        new_word = bytes(buf[start : start + t.word])
        entries.append(flip_entry(t, f.word, f.bit, old_word, new_word, old_byte, buf[off]))
    per_target = space.per_target()
    manifest = {
        "format": MANIFEST_FORMAT,
        "qtool_version": __version__,
        "model": str(path),
        "source_sha256": source_sha[""],
        "source_files_sha256": {k: v for k, v in source_sha.items() if k},
        "flippable_sha256": flippable_sha,
        "converted_to_raw_data": converted,
        "converted_originals": [
            {"graph": g, "tensor": n, "tensor_proto_base64": base64.b64encode(b).decode()}
            for (g, n), b in originals.items()
        ],
        "flipped_sha256": flipped_sha,
        "flipped_files_sha256": flipped_ext,
        "seed": settings.seed,
        "bits": settings.bits,
        "fault": settings.fault,
        "targets": settings.targets,
        "layers": settings.layers,
        "positions": settings.positions,
        "eligible_bits": space.total,
        "eligible_tensors": [
            {
                "tensor": t.loc.name,
                "graph": t.loc.graph,
                "role": t.role,
                "dtype": dtype_name(t.loc.data_type),
                "bits": int(per_target[i]),
            }
            for i, t in enumerate(targets)
        ],
        "flips": entries,
    }
    return Injection(files, manifest, targets, flips)


# --- writing ---------------------------------------------------------------------------------


def write_model_files(
    files: ModelFiles, out: str | Path, force: bool = False, changed: set | None = None
) -> Path:
    """Write the model atomically; external-data files are copied beside it (changed ones
    from memory). The output folder must differ from the source's when external data exists,
    since the copies keep their names."""
    out = Path(out)
    check_output_path(out, force, inputs=(files.path,))
    if files.external:
        if out.parent.resolve() == files.path.parent.resolve():
            raise QtoolError(
                f"{files.path} keeps weights in external files ({', '.join(files.external)}) "
                "that the output needs beside it under the same names; write --out into "
                "another folder"
            )
        for name in files.external:
            target = out.parent / name
            if target.exists() and not force:
                raise QtoolError(
                    f"external-data file {target} already exists: choose another folder or "
                    "pass --force"
                )
    for name, buf in files.external.items():
        target = out.parent / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if changed is None or name in changed:
            atomic_write(target, buf)
        else:
            atomic_write(
                target, lambda tmp, name=name: shutil.copyfile(files.path.parent / name, tmp)
            )
    atomic_write(out, files.main)
    return out


# --- replay and undo -------------------------------------------------------------------------


def load_manifest(path: str | Path) -> dict:
    import json

    path = Path(path)
    if not path.is_file():
        raise QtoolError(f"manifest {path} does not exist: give the flips.json that flip wrote")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QtoolError(f"manifest {path} is not JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise QtoolError(f"{path} is not a qtool flip manifest (format {MANIFEST_FORMAT})")
    return manifest


def entry_offset(
    path: str | Path, entry: dict, by_key: dict, inline: bool = False
) -> tuple[int, int]:
    """(byte offset, bit in byte) of a manifest entry, found by tensor name and word index."""
    loc = by_key.get((entry["graph"], entry["tensor"]))
    if loc is None or not loc.flippable or (inline and loc.file is not None):
        raise QtoolError(
            f"{path} has no flippable tensor {entry['tensor']!r} (graph {entry['graph']}) "
            "that the manifest names; is it the right model?"
        )
    word = _WORD[loc.data_type][0]
    off = loc.offset + int(entry["word"]) * word + int(entry["bit"]) // 8
    if int(entry["word"]) * word >= loc.length:
        raise QtoolError(f"manifest entry for {entry['tensor']!r} lies outside the tensor")
    return off, int(entry["bit"]) % 8


def replay(path: str | Path, manifest: dict, undo: bool = False, force: bool = False) -> ModelFiles:
    """Re-apply (or undo) a manifest's flips on a model, checking it is the model they
    were made on (source sha256 for apply, flipped sha256 for undo) unless `force`."""
    files = read_model_files(path)
    sha = files.sha256()
    expect = manifest["flipped_sha256"] if undo else manifest["source_sha256"]
    matches = sha[""] == expect
    if not matches and not force:
        what = "flipped model the manifest produced" if undo else "model the manifest was made on"
        raise QtoolError(
            f"{path} is not the {what} (sha256 {sha[''][:12]}... != {expect[:12]}...); "
            "pass --force to apply the flips by tensor name and bit anyway"
        )
    if not undo and manifest.get("converted_to_raw_data"):
        keys = {(o["graph"], o["tensor"]) for o in manifest["converted_originals"]}
        new, _ = to_flippable(files.main, only=keys)
        files.main[:] = new
    by_key = {(loc.graph, loc.name): loc for loc in locate_initializers(files.main)}
    buffers = files.buffers()
    entries = list(reversed(manifest["flips"])) if undo else manifest["flips"]
    for entry in entries:
        off, b = entry_offset(path, entry, by_key)
        buf = buffers.get(entry["file"])
        if buf is None:
            raise QtoolError(f"{path} has no external-data file {entry['file']!r}")
        before, after = (
            (entry["new_byte"], entry["old_byte"])
            if undo
            else (
                entry["old_byte"],
                entry["new_byte"],
            )
        )
        if matches and buf[off] != before:
            raise WorkFailed(
                f"byte {off} of {entry['file'] or path} is {buf[off]}, the manifest expects "
                f"{before}; the manifest does not match this file"
            )
        want = (after >> b) & 1
        buf[off] = (buf[off] & ~(1 << b) & 0xFF) | (want << b)
    if undo and manifest.get("converted_originals"):
        bodies = {
            (o["graph"], o["tensor"]): base64.b64decode(o["tensor_proto_base64"])
            for o in manifest["converted_originals"]
        }
        files.main[:] = replace_tensors(files.main, bodies)
    if matches:
        final = files.sha256()[""]
        expect_out = manifest["source_sha256"] if undo else manifest["flipped_sha256"]
        if final != expect_out:
            raise WorkFailed(
                f"replaying the manifest on {path} gave sha256 {final[:12]}..., not the "
                f"expected {expect_out[:12]}...; the output was not written"
            )
    return files


def changed_files(before: ModelFiles | dict, after: ModelFiles) -> set[str]:
    """External files whose bytes differ (by sha256 map of `before`)."""
    prev = before if isinstance(before, dict) else before.sha256()
    return {name for name, buf in after.external.items() if prev.get(name) != _sha(buf)}


def supported_types() -> list[str]:
    return [dtype_name(t) for t in sorted(ITEMSIZE) if t in _WORD]
