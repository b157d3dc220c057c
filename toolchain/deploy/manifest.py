"""The bundle's layout and its manifest: names, paths that must stay inside, reading back.

A bundle is a folder holding the model file(s) unchanged, `manifest.json`, `MODEL_CARD.md`,
optionally `model.ecc`, `reports/` and `manifest.sig` (see `signing`). The manifest lists
every file but itself and its signature, so a signature over it covers them all. Every path
read from a manifest (or an archive, see `archive`) is checked to stay inside the bundle
before anything is opened.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path, PurePosixPath

from qtool.errors import QtoolError

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
    and every path it names inside the folder. `data` is the manifest's bytes when the caller
    already read them (so what was hashed or signature-checked is what gets parsed)."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise QtoolError(f"{folder} is not a bundle folder or archive (.tar.gz/.zip)")
    if data is None and not path.is_file():
        raise QtoolError(f"{folder} has no manifest.json: is it a bundle made by qtool package?")
    try:
        manifest = json.loads(path.read_bytes() if data is None else data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise QtoolError(f"{path} is not valid JSON ({exc}); the bundle is damaged") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise QtoolError(f"{path} is not a qtool bundle manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise QtoolError(
            f"{path} has format version {manifest['format_version']}; upgrade qtool to read it"
        )
    for rel in dict.fromkeys(manifest_paths(manifest)):  # each path once, not once a tensor
        safe_member(folder, rel)
    return manifest
