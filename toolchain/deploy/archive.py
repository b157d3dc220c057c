"""Bundles as one file (.tar.gz or .zip): writing them, and opening them safely.

An archive comes from elsewhere, so every member is checked before anything is extracted:
a relative path that stays inside (no `..`, no absolute path, no backslash), a plain file or
folder (no links, devices or fifos), and a total size under MAX_ARCHIVE_BYTES. Only then are
the members written, each to a path built from its checked name.
"""

from __future__ import annotations

import contextlib
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO

from qtool.deploy.manifest import MANIFEST
from qtool.errors import QtoolError
from qtool.outputs import atomic_path

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")
MAX_ARCHIVE_BYTES = 64 * 2**30
_ZIP_FILE, _ZIP_DIR = 0o100000, 0o040000


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
    for info in zf.infolist():
        mode = (info.external_attr >> 16) & 0o170000
        _check_name(info.filename, archive)
        if mode and mode not in (_ZIP_FILE, _ZIP_DIR):
            raise QtoolError(f"{archive}: member {info.filename!r} is not a plain file")
        opener = partial(zf.open, info)
        members.append(_Member(info.filename, info.filename.endswith("/"), info.file_size, opener))
    return members


def _tar_members(tar: tarfile.TarFile, archive: Path) -> list[_Member]:
    members = []
    for info in tar.getmembers():
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
    total = 0
    for member in members:
        total += member.size
        if total > MAX_ARCHIVE_BYTES:
            raise QtoolError(f"{archive} unpacks to over 64 GiB; refusing it")


def _extract(members: list[_Member], dest: Path) -> None:
    for member in members:
        target = dest / member.name
        if member.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with member.open() as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)


def extract_archive(archive: Path, dest: Path) -> Path:
    """Check every member, then extract into `dest`; return the folder holding the manifest."""
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                members = _zip_members(zf, archive)
                _check_total(members, archive)
                _extract(members, dest)
        else:
            with tarfile.open(archive, "r:*") as tar:
                members = _tar_members(tar, archive)
                _check_total(members, archive)
                _extract(members, dest)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise QtoolError(f"{archive} is not a readable bundle archive ({exc})") from exc
    manifests = [p for p in dest.rglob(MANIFEST) if p.is_file()]
    if len(manifests) != 1:
        raise QtoolError(f"{archive} holds {len(manifests)} manifest.json files; expected one")
    return manifests[0].parent


@contextlib.contextmanager
def opened_bundle(path: Path, prefix: str = "qtool-bundle-") -> Iterator[Path]:
    """The bundle folder at `path`, or an archive's contents extracted to a temporary folder
    (removed afterwards)."""
    if not is_archive(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield extract_archive(path, Path(tmp))
