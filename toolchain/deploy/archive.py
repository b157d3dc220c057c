"""Bundles as one file (.tar.gz or .zip): writing them, and opening them safely.

An archive comes from elsewhere, so every member is checked before anything is extracted:
a relative path that stays inside (no `..`, no absolute path, no backslash), named once (a
second `manifest.json` must not silently win), a plain file or folder (no links, devices or
fifos), and, from the headers, the member count and total size within the bundle-files and
bundle-bytes limits and the total no more than bundle-ratio times the archive's size
(`qtool.limits`; a zip or tar bomb unpacks to thousands of times its size). Extraction then
counts the bytes it writes and stops at a member's stated size, so headers that lie gain
nothing. Members are written to paths built from their checked names, in a temporary folder
named like qtool's other temp folders (removed on exit; a killed run's is swept later).
"""

from __future__ import annotations

import contextlib
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO
from zlib import error as zlib_error

from qtool import limits
from qtool.deploy.manifest import MANIFEST
from qtool.errors import QtoolError
from qtool.outputs import atomic_path, staging_dir

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")
FORMAT_SUFFIXES = {"tar.gz": (".tar.gz", ".tgz"), "zip": (".zip",)}
RATIO_FLOOR = 64 * 2**20  # archives unpacking to less are never refused for their ratio
_ZIP_FILE, _ZIP_DIR = 0o100000, 0o040000
_CHUNK = 1 << 20


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES)


def archive_root(out: Path) -> str:
    """The one folder an archive's members sit in: the archive's name without its suffix."""
    return out.name.removesuffix(".tar.gz").removesuffix(".tgz").removesuffix(".zip")


# --- writing ---------------------------------------------------------------------------------


def write_archive(folder: Path, out: Path, fmt: str) -> None:
    """Write every file of `folder` under one root folder into `out` ("tar.gz" or "zip")."""
    root = archive_root(out)
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    with atomic_path(out) as tmp:
        if fmt == "tar.gz":
            with tarfile.open(tmp, "w:gz") as tar:
                for path in files:
                    tar.add(path, arcname=f"{root}/{path.relative_to(folder).as_posix()}")
        else:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in files:
                    zf.write(path, f"{root}/{path.relative_to(folder).as_posix()}")


# --- reading ---------------------------------------------------------------------------------


@dataclass
class _Member:
    name: str
    is_dir: bool
    size: int
    open: Callable[[], IO[bytes]]


def _zip_members(zf: zipfile.ZipFile, archive: Path) -> list[_Member]:
    members = []
    limits.check("bundle_files", len(zf.infolist()), f"the members of {archive}")
    for info in zf.infolist():
        mode = (info.external_attr >> 16) & 0o170000
        _check_name(info.filename, archive)
        if mode and mode not in (_ZIP_FILE, _ZIP_DIR):
            raise QtoolError(f"{archive}: member {info.filename!r} is not a plain file")
        opener = partial(zf.open, info)
        members.append(_Member(info.filename, info.filename.endswith("/"), info.file_size, opener))
    return members


def _tar_members(tar: tarfile.TarFile, archive: Path) -> list[_Member]:
    """Headers are read one by one (a tar has no index), counted against bundle-files and
    bundle-bytes as they come, so a stream of millions of empty members stops early."""
    members = []
    total, budget = 0, limits.current()
    for info in tar:
        if len(members) >= budget.bundle_files:
            limits.check("bundle_files", len(members) + 1, f"the members of {archive}")
        total += max(info.size, 0)
        limits.check("bundle_bytes", total, f"the unpacked size of {archive}")
        _check_name(info.name, archive)
        if not (info.isfile() or info.isdir()):
            raise QtoolError(
                f"{archive}: member {info.name!r} is a link or device; "
                "bundles hold plain files only"
            )
        opener = partial(tar.extractfile, info)
        members.append(_Member(info.name, info.isdir(), info.size, opener))
    return members


def _check_name(name: str, archive: Path) -> None:
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or "\\" in name or name.startswith("/"):
        raise QtoolError(
            f"{archive}: member {name!r} is absolute or climbs out of the archive; refusing it"
        )


def _check_total(members: list[_Member], archive: Path) -> None:
    """From the headers, before anything is written: names unique, size and ratio bounded."""
    seen: set[tuple[str, ...]] = set()
    for member in members:
        key = PurePosixPath(member.name).parts
        if key in seen and not member.is_dir:
            raise QtoolError(
                f"{archive}: member {member.name!r} appears twice; a bundle names each file once"
            )
        seen.add(key)
    total = sum(max(m.size, 0) for m in members)
    limits.check("bundle_bytes", total, f"the unpacked size of {archive}")
    packed = max(archive.stat().st_size, 1)
    if total > RATIO_FLOOR:
        limits.check(
            "bundle_ratio",
            total // packed,
            f"the unpacked/packed size ratio of {archive} ({limits.human(total, 'bytes')} from "
            f"{limits.human(packed, 'bytes')})",
        )


def _extract(members: list[_Member], dest: Path, archive: Path) -> None:
    """Write the checked members, each stopped at its stated size; the total is counted
    against bundle-bytes as it grows (a header that understates a member gains nothing)."""
    written = 0
    for member in members:
        target = dest.joinpath(*PurePosixPath(member.name).parts)
        if member.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with member.open() as src, open(target, "wb") as dst:
            left = member.size
            while left > 0:
                chunk = src.read(min(_CHUNK, left))
                if not chunk:
                    break
                dst.write(chunk)
                left -= len(chunk)
                written += len(chunk)
                limits.check("bundle_bytes", written, f"the unpacked size of {archive}")
            if src.read(1):
                raise QtoolError(f"{archive}: member {member.name!r} is longer than its header")


def extract_archive(archive: Path, dest: Path) -> Path:
    """Check every member, then extract into `dest`; return the folder holding the manifest."""
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                members = _zip_members(zf, archive)
                _check_total(members, archive)
                _extract(members, dest, archive)
        else:
            with tarfile.open(archive, "r:*") as tar:
                members = _tar_members(tar, archive)
                _check_total(members, archive)
                _extract(members, dest, archive)
    except (
        tarfile.TarError,
        zipfile.BadZipFile,
        EOFError,
        OSError,
        ValueError,
        NotImplementedError,
        RuntimeError,
        zlib_error,
    ) as exc:  # fmt: skip  (zip: unknown compression or encryption; corrupt deflate streams)
        raise QtoolError(f"{archive} is not a readable bundle archive ({exc})") from exc
    manifests = [p for p in dest.rglob(MANIFEST) if p.is_file()]
    if len(manifests) != 1:
        raise QtoolError(f"{archive} holds {len(manifests)} manifest.json files; expected one")
    return manifests[0].parent


@contextlib.contextmanager
def opened_bundle(path: Path, prefix: str = "qtool-bundle") -> Iterator[Path]:
    """The bundle folder at `path`, or an archive's contents extracted to a temporary folder
    (removed afterwards, on any exit; a killed run's folder is swept by the next one)."""
    if not is_archive(path):
        yield path
        return
    with staging_dir(Path(tempfile.gettempdir()) / prefix) as tmp:
        yield extract_archive(path, tmp)
