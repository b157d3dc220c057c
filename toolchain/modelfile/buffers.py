"""A model's bytes and its external-data files as editable buffers, read and written whole.

Faults, checksums and packaging address stored bytes directly, so they hold a model as
bytearrays (the .onnx file and each external-data file it names) rather than as a parsed
ModelProto: editing a bit is then an assignment, and writing back changes nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from qtool.errors import QtoolError, option
from qtool.modelfile.load import external_data_path, model_path, parse_model
from qtool.modelfile.locate import graph_nodes
from qtool.outputs import check_output_path, commit_together, staged_file, to_jsonable

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
    """Read the model and every external-data file it uses, refusing paths outside its folder
    and any model onnx or ONNX Runtime cannot load (`validate`): a fault is injected only
    into a model that works, so what changes is the fault's doing."""
    from qtool.modelfile.validate import check_model, check_runtime

    path = model_path(path)
    data = bytearray(path.stat().st_size)
    with open(path, "rb") as fh:
        fh.readinto(data)
    try:
        for raw in graph_nodes(data).values():
            onnx.GraphProto.FromString(raw)
    except QtoolError as exc:
        raise QtoolError(f"{path} is not an ONNX model ({exc})") from exc
    except Exception as exc:  # protobuf DecodeError on garbage
        raise QtoolError(f"{path} is not an ONNX model (cannot parse its graph: {exc})") from exc
    locations = check_model(parse_model(data, path), data, path, path)
    check_runtime(path, path)
    files = ModelFiles(path, data)
    for loc in locations:
        if loc.file is None or loc.file in files.external:
            continue
        target = external_data_path(path, loc.name, loc.file)
        files.external[loc.file] = bytearray(target.read_bytes())
    return files


def write_model_files(
    files: ModelFiles,
    out: str | Path | None,
    force: bool = False,
    *,
    manifest: tuple[str | Path, object] | None = None,
) -> Path | None:
    """Write the model (and, with `manifest` = (path, payload), its JSON manifest) as one
    unit: every file is staged beside its final name first, then all are renamed in a fixed
    order (external-data files, the model, the manifest last) under a lock on their folders
    (`qtool.outputs.commit_together`). A reader may see, for an instant, the new model beside
    the old manifest, never a manifest without its model; the manifest records the model's
    sha256, so the pair can be checked. External-data files are written beside the model
    from memory; the output folder must differ from the source's when there
    are any, since the copies keep their names."""
    targets = _targets(files, out, force, manifest)
    with contextlib.ExitStack() as stack:
        pairs = []
        for final, write in targets:
            tmp = stack.enter_context(staged_file(final))
            write(tmp)
            pairs.append((tmp, final))
        commit_together(pairs)
    return None if out is None else Path(out)


def _targets(files: ModelFiles, out, force: bool, manifest) -> list[tuple[Path, Callable]]:
    """(final path, writer of a temp path) of every file to write, in commit order."""
    targets: list[tuple[Path, Callable[[Path], None]]] = []
    if out is not None:
        out = Path(out)
        check_output_path(out, force, inputs=(files.path,), param="out")
        targets += _external_targets(files, out, force)
        targets.append((out, lambda tmp: tmp.write_bytes(files.main)))
    if manifest is not None:
        path, payload = Path(manifest[0]), manifest[1]
        text = json.dumps(to_jsonable(payload), indent=2) + "\n"
        targets.append((path, lambda tmp: tmp.write_text(text)))
    finals = [os.path.realpath(final) for final, _ in targets]
    if len(set(finals)) != len(finals):
        raise QtoolError(
            "two of the files to write (model, external data, manifest) are the same path; "
            "give the manifest and the model distinct names",
            param="manifest_path",
        )
    return targets


def _external_targets(files: ModelFiles, out: Path, force: bool) -> list:
    if not files.external:
        return []
    if out.parent.resolve() == files.path.parent.resolve():
        raise QtoolError(
            f"{files.path} keeps weights in external files ({', '.join(files.external)}) "
            "that the output needs beside it under the same names; write the output into "
            "another folder",
            param="out",
        )
    targets = []
    for name, buf in files.external.items():
        target = out.parent / name
        if target.exists() and not force:
            raise QtoolError(
                f"external-data file {target} already exists: choose another folder or "
                f"pass {option('force')}",
                param="out",
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        targets.append((target, lambda tmp, buf=buf: tmp.write_bytes(buf)))
    return targets


def changed_files(before: ModelFiles | dict[str, str], after: ModelFiles) -> set[str]:
    """External files whose bytes differ (by the sha256 map of `before`)."""
    prev = before if isinstance(before, dict) else before.sha256()
    return {name for name, buf in after.external.items() if prev.get(name) != sha256_hex(buf)}
