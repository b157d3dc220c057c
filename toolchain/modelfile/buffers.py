"""A model's bytes and its external-data files as editable buffers, read and written whole.

Faults, checksums and packaging address stored bytes directly, so they hold a model as
bytearrays (the .onnx file and each external-data file it names) rather than as a parsed
ModelProto: editing a bit is then an assignment, and writing back changes nothing else.
"""

from __future__ import annotations

import hashlib
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from qtool.errors import QtoolError
from qtool.modelfile.load import external_data_path
from qtool.modelfile.locate import graph_nodes, locate_initializers
from qtool.outputs import atomic_write, check_output_path

# the key of the .onnx file itself among a model's buffers (external files go by their name)
MAIN = None
Buffers = dict[str | None, bytearray]


@dataclass
class ModelFiles:
    """A model's bytes and its external-data files, as editable buffers."""

    path: Path
    main: bytearray
    external: dict[str, bytearray] = field(default_factory=dict)

    def buffers(self) -> Buffers:
        """Every buffer by file key: MAIN (None) for the model, the file name for the rest."""
        return {MAIN: self.main, **self.external}

    def sha256(self) -> dict[str, str]:
        """sha256 per file: "" for the model file, the external-data file names for the rest."""
        out = {"": sha256_hex(self.main)}
        out.update({name: sha256_hex(buf) for name, buf in self.external.items()})
        return out


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_pair(buf: bytearray, patches: dict[int, int]) -> tuple[str, str]:
    """sha256 of `buf` and of `buf` with bytes replaced by `patches`, hashed concurrently
    (hashlib releases the GIL) without copying the buffer: a 100 MB model's two hashes then
    cost one pass of wall time."""
    view = memoryview(buf)
    with ThreadPoolExecutor(1) as pool:
        source = pool.submit(sha256_hex, view)
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
        for raw in graph_nodes(data).values():
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


def write_model_files(
    files: ModelFiles, out: str | Path, force: bool = False, changed: set[str] | None = None
) -> Path:
    """Write the model atomically; external-data files are copied beside it (changed ones
    from memory). The output folder must differ from the source's when external data exists,
    since the copies keep their names."""
    out = Path(out)
    check_output_path(out, force, inputs=(files.path,), param="out")
    if files.external:
        if out.parent.resolve() == files.path.parent.resolve():
            raise QtoolError(
                f"{files.path} keeps weights in external files ({', '.join(files.external)}) "
                "that the output needs beside it under the same names; write the output into "
                "another folder",
                param="out",
            )
        for name in files.external:
            target = out.parent / name
            if target.exists() and not force:
                raise QtoolError(
                    f"external-data file {target} already exists: choose another folder or "
                    "pass --force",
                    param="out",
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


def changed_files(before: ModelFiles | dict[str, str], after: ModelFiles) -> set[str]:
    """External files whose bytes differ (by the sha256 map of `before`)."""
    prev = before if isinstance(before, dict) else before.sha256()
    return {name for name, buf in after.external.items() if prev.get(name) != sha256_hex(buf)}
