"""deploy.archive: bundles written as tar.gz/zip come back byte for byte; an archive with any
unsafe member (`..`, an absolute path, a link, a device) is refused before anything of it
is written, even when the unsafe member comes after good ones."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile

import pytest
from builders import digits_linear_weights, linear_image_model, save

from qtool import limits
from qtool.deploy.archive import extract_archive, is_archive, opened_bundle, write_archive
from qtool.deploy.bundle import package
from qtool.errors import QtoolError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A real bundle folder (linear digits model) to archive."""
    tmp = tmp_path_factory.mktemp("archive")
    w, b = digits_linear_weights()
    model = save(linear_image_model(w, b), tmp / "lin.onnx")
    package(model, tmp / "bundle")
    return tmp / "bundle"


def files_of(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_written_archive_extracts_to_the_same_files(folder, tmp_path, fmt):
    out = tmp_path / f"b.{fmt}"
    write_archive(folder, out, fmt)
    assert is_archive(out) and not is_archive(folder)
    dest = tmp_path / "dest"
    dest.mkdir()
    root = extract_archive(out, dest)
    assert root == dest / "b" and files_of(root) == files_of(folder)
    with opened_bundle(out) as opened:
        assert files_of(opened) == files_of(folder)
    assert not opened.exists()  # the temporary copy is gone
    with opened_bundle(folder) as same:
        assert same == folder


def tar_with(path, folder, extra: tarfile.TarInfo, payload: bytes = b""):
    """A tar.gz of the good bundle under b/, then one extra member."""
    with tarfile.open(path, "w:gz") as tar:
        for p in sorted(folder.rglob("*")):
            tar.add(p, arcname=f"b/{p.relative_to(folder).as_posix()}")
        tar.addfile(extra, io.BytesIO(payload) if payload else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (member("../evil.txt", size=4), "climbs out"),
        (member("b/../../evil.txt", size=4), "climbs out"),
        (member("/tmp/qtool-abs.txt", size=4), "climbs out"),
        (member("b/link", tarfile.SYMTYPE, link="/etc/passwd"), "link or device"),
        (member("b/hard", tarfile.LNKTYPE, link="b/manifest.json"), "link or device"),
        (member("b/dev", tarfile.CHRTYPE), "link or device"),
        (member("b/fifo", tarfile.FIFOTYPE), "link or device"),
    ],
)
def test_unsafe_tar_member_is_refused_before_extraction(folder, tmp_path, extra, message):
    path = tar_with(tmp_path / "bad.tar.gz", folder, extra, b"evil" if extra.size else b"")
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(QtoolError, match=message):
        extract_archive(path, dest)
    assert list(dest.iterdir()) == []  # nothing written, not even the good members
    assert not (tmp_path / "evil.txt").exists()


def zip_with(path, folder, name: str, mode: int | None = None):
    with zipfile.ZipFile(path, "w") as zf:
        for p in sorted(folder.rglob("*")):
            zf.write(p, f"b/{p.relative_to(folder).as_posix()}")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        zf.writestr(info, "evil")
    return path


@pytest.mark.parametrize(
    ("name", "mode", "message"),
    [
        ("../../evil.txt", None, "climbs out"),
        ("/abs.txt", None, "climbs out"),
        ("b\\..\\evil.txt", None, "climbs out"),
        ("b/link", stat.S_IFLNK | 0o777, "not a plain file"),
    ],
)
def test_unsafe_zip_member_is_refused_before_extraction(folder, tmp_path, name, mode, message):
    path = zip_with(tmp_path / "bad.zip", folder, name, mode)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(QtoolError, match=message):
        extract_archive(path, dest)
    assert list(dest.iterdir()) == []


def test_archive_over_the_size_limit_is_refused_before_extraction(folder, tmp_path):
    out = tmp_path / "b.zip"
    write_archive(folder, out, "zip")
    dest = tmp_path / "dest"
    dest.mkdir()
    with limits.using(bundle_bytes=1000), pytest.raises(QtoolError, match="bundle-bytes limit"):
        extract_archive(out, dest)
    assert list(dest.iterdir()) == []


def test_damaged_archives_and_manifest_count(folder, tmp_path):
    garbage = tmp_path / "g.tar.gz"
    garbage.write_bytes(b"this is not gzip at all")
    with pytest.raises(QtoolError, match="not a readable bundle archive"):
        extract_archive(garbage, tmp_path)
    two = tmp_path / "two.tar.gz"
    with tarfile.open(two, "w:gz") as tar:
        tar.add(folder, arcname="one")
        tar.add(folder, arcname="two")
    (tmp_path / "x").mkdir()
    with pytest.raises(QtoolError, match="holds 2 manifest.json files"):
        extract_archive(two, tmp_path / "x")
