"""The bundle's layout and its manifest: names, paths that must stay inside, reading back.

A bundle is a folder holding the model file(s) unchanged, `manifest.json`, `MODEL_CARD.md`,
optionally `model.ecc`, `reports/` and `manifest.sig` (see `signing`). The manifest lists
every file but itself and its signature, so a signature over it covers them all. Every path
read from a manifest (or an archive, see `archive`) is checked to stay inside the bundle
before anything is opened.
"""

from __future__ import annotations

import zlib
from pathlib import Path, PurePosixPath

from qtool import limits
from qtool.errors import QtoolError
from qtool.readable import read_json, regular_file

FORMAT = "qtool-bundle"
FORMAT_VERSION = 1
BLOCK = 4096  # bytes per CRC32 block of a tensor
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
CARD = "MODEL_CARD.md"
ECC_FILE = "model.ecc"
REPORTS = "reports"


def safe_member(root: Path, relative: str) -> Path:
    """Resolve a path from a manifest or archive; refuse anything that leaves `root`."""
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or ".." in pure.parts or "\\" in relative:
        raise QtoolError(
            f"bundle path {relative!r} is absolute or climbs out of the bundle; refusing it"
        )
    target = root.joinpath(*pure.parts)
    resolved = target.resolve()
    root_resolved = root.resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise QtoolError(f"bundle path {relative!r} leads outside the bundle (symlink?); refusing")
    if target.is_symlink():
        raise QtoolError(f"bundle path {relative!r} is a symlink; bundles hold plain files only")
    return target


def block_crcs(data: bytes | memoryview) -> list[int]:
    """CRC32 of each BLOCK-byte block (one CRC of nothing for empty data)."""
    return [zlib.crc32(data[i : i + BLOCK]) for i in range(0, len(data), BLOCK)] or [
        zlib.crc32(b"")
    ]


def changed_blocks(record: dict, piece: bytes) -> list[int]:
    """Blocks of a tensor whose CRC32 differs from the manifest record's (a short `piece`
    differs in every block it no longer covers)."""
    return [
        i
        for i, crc in enumerate(record["crc32"])
        if zlib.crc32(piece[i * BLOCK : (i + 1) * BLOCK]) != crc
    ]


def manifest_paths(manifest: dict) -> list[str]:
    """Every bundle-relative path a manifest names."""
    model = manifest.get("model", {})
    paths = [*manifest.get("files", {}), model.get("file", ""), *model.get("data_files", [])]
    paths += [record["file"] for record in manifest.get("initializers", [])]
    if manifest.get("ecc"):
        paths.append(manifest["ecc"]["file"])
    return paths


def unlisted_files(folder: Path, manifest: dict) -> list[str]:
    """Files in a bundle folder that its manifest does not name (nor are the manifest or its
    signature): a bundle holds exactly what was packaged, so these are reported."""
    listed = set(manifest_paths(manifest)) | {MANIFEST, SIGNATURE}
    return [
        rel
        for path in sorted(folder.rglob("*"))
        if (path.is_file() or path.is_symlink())
        and (rel := path.relative_to(folder).as_posix()) not in listed
    ]


def read_manifest(folder: Path, data: bytes | None = None) -> dict:
    """The manifest of a bundle folder, checked: qtool's format, a version this qtool reads,
    every field verify relies on of the right type (`check_manifest`), and every path it
    names inside the folder. `data` is the manifest's bytes when the caller already read
    them (so what was hashed or signature-checked is what gets parsed)."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise QtoolError(f"{folder} is not a bundle folder or archive (.tar.gz/.zip)")
    if data is None:
        data = read_manifest_bytes(folder)
        if data is None:
            raise QtoolError(
                f"{folder} has no manifest.json: is it a bundle made by qtool package?"
            )
    manifest = read_json(path, "manifest", data=data)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise QtoolError(f"{path} is not a qtool bundle manifest")
    version = manifest.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise QtoolError(
            f"{path}: format_version {version!r} is not a number; the bundle is damaged"
        )
    if version > FORMAT_VERSION:
        raise QtoolError(f"{path} has format version {version}; upgrade qtool to read it")
    check_manifest(manifest, path)
    for rel in dict.fromkeys(manifest_paths(manifest)):  # each path once, not once a tensor
        safe_member(folder, rel)
    check_coverage(manifest, path)
    return manifest


def read_manifest_bytes(folder: Path) -> bytes | None:
    """manifest.json's bytes, None when absent; a symlink, FIFO or device is refused (a link
    could point anywhere, even outside the bundle), and so is a manifest over json-bytes."""
    path = folder / MANIFEST
    if path.is_symlink():
        raise QtoolError(f"{path} is a symlink; a bundle's manifest must be a plain file")
    if not path.exists():
        return None
    regular_file(path, "bundle manifest")
    limits.check("json_bytes", path.stat().st_size, f"manifest {path}")
    return path.read_bytes()


def _fail(path: Path, what: str) -> QtoolError:
    return QtoolError(f"{path}: {what}; the bundle is damaged or was not made by qtool package")


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _sha(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in HEX for c in value.lower())


HEX = frozenset("0123456789abcdef")
TENSOR_FIELDS = {"name": str, "file": str, "sha256": "sha", "offset": "count", "length": "count",
                 "itemsize": "count", "crc32": list}  # fmt: skip
COVER_FIELDS = {"file": str, "bytes": "count", "parity_offset": "count", "parity_bytes": "count"}


def _record(item: object, spec: dict, where: str, path: Path) -> None:
    if not isinstance(item, dict):
        raise _fail(path, f"{where} is not an object")
    for key, kind in spec.items():
        value = item.get(key)
        ok = (
            _count(value)
            if kind == "count"
            else _sha(value)
            if kind == "sha"
            else isinstance(value, kind)
        )
        if not ok:
            raise _fail(path, f"{where} has no valid {key!r} ({str(value)[:40]!r})")


def check_manifest(manifest: dict, path: Path) -> None:
    """Every field verify, repair and predict read, of the right type."""
    files, model = manifest.get("files"), manifest.get("model")
    if not isinstance(files, dict) or not files:
        raise _fail(path, "'files' is not a non-empty object of file -> sha256 and size")
    for rel, info in files.items():
        if (
            not isinstance(info, dict)
            or not _sha(info.get("sha256"))
            or not _count(info.get("bytes"))
        ):
            raise _fail(path, f"files[{rel!r}] needs a sha256 and a byte count")
    if not isinstance(model, dict) or not isinstance(model.get("file"), str):
        raise _fail(path, "'model' does not name the model file")
    data_files = model.get("data_files", [])
    if not isinstance(data_files, list) or not all(isinstance(f, str) for f in data_files):
        raise _fail(path, "model.data_files is not a list of file names")
    tensors = manifest.get("initializers")
    if not isinstance(tensors, list):
        raise _fail(path, "'initializers' is not a list")
    for i, item in enumerate(tensors):
        _record(item, TENSOR_FIELDS, f"initializers[{i}]", path)
        if not all(_count(c) for c in item["crc32"]):
            raise _fail(path, f"initializers[{i}].crc32 is not a list of CRC32 values")
    if manifest.get("ecc") is not None:
        _check_ecc(manifest["ecc"], path)
    runtime = manifest.get("runtime")  # the provider predict runs on (absent before it existed)
    if runtime is not None:
        _record(runtime, {"provider": str}, "'runtime'", path)
        if not isinstance(runtime.get("precision", ""), str):
            raise _fail(path, "runtime.precision is not a name")


def check_coverage(manifest: dict, path: Path) -> None:
    """Every file the manifest uses (model, data files, tensors' files, parity) has a sha256
    in `files`: a manifest that does not hash the model vouches for nothing."""
    model, ecc = manifest["model"], manifest.get("ecc")
    needed = [model["file"], *model.get("data_files", [])]
    needed += [t["file"] for t in manifest.get("initializers", [])]
    if ecc is not None:
        needed += [ecc["file"], *(c["file"] for c in ecc["covers"])]
    unhashed = [rel for rel in dict.fromkeys(needed) if rel not in manifest["files"]]
    if unhashed:
        raise _fail(path, f"{unhashed[0]!r} is used but has no sha256 in 'files'")


def _check_ecc(ecc: object, path: Path) -> None:
    if not isinstance(ecc, dict) or not isinstance(ecc.get("file"), str):
        raise _fail(path, "'ecc' does not name its parity file")
    nsym = ecc.get("nsym")
    if not _count(nsym) or not 2 <= nsym <= 128 or nsym % 2:
        raise _fail(path, f"ecc.nsym {nsym!r} is not an even number from 2 to 128")
    covers = ecc.get("covers")
    if not isinstance(covers, list):
        raise _fail(path, "ecc.covers is not a list")
    for i, cover in enumerate(covers):
        _record(cover, COVER_FIELDS, f"ecc.covers[{i}]", path)
