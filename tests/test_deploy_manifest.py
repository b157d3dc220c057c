"""deploy.manifest: paths stay inside the bundle; a manifest is read only when it is qtool's,
of a version this qtool knows, and names nothing outside its folder; CRC32 blocks."""

from __future__ import annotations

import hashlib
import json
import os
import zlib

import numpy as np
import pytest

from qtool.deploy.manifest import (
    BLOCK,
    FORMAT,
    block_crcs,
    changed_blocks,
    read_manifest,
    safe_member,
)
from qtool.errors import QtoolError


@pytest.fixture
def bundle(tmp_path):
    folder = tmp_path / "bundle"
    (folder / "sub").mkdir(parents=True)
    (folder / "m.onnx").write_bytes(b"model")
    (folder / "sub" / "w.bin").write_bytes(b"weights")
    manifest = {
        "format": FORMAT,
        "format_version": 1,
        "model": {"file": "m.onnx", "data_files": ["sub/w.bin"]},
        "files": {"m.onnx": entry(b"model"), "sub/w.bin": entry(b"weights")},
        "initializers": [tensor("w", "sub/w.bin")],
        "ecc": None,
    }
    write(folder, manifest)
    return folder


def entry(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def tensor(name: str, file: str) -> dict:
    return {"name": name, "file": file, "sha256": "0" * 64, "offset": 0, "length": 7,
            "itemsize": 1, "crc32": [0]}  # fmt: skip


def write(folder, manifest) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_safe_member_keeps_paths_inside(bundle, tmp_path):
    assert safe_member(bundle, "sub/w.bin") == bundle / "sub" / "w.bin"
    assert safe_member(bundle, "not/yet/there.bin") == bundle / "not" / "yet" / "there.bin"
    for bad in ("../x", "sub/../../x", "/etc/passwd", "sub\\w.bin", ""):
        with pytest.raises(QtoolError, match="absolute or climbs out"):
            safe_member(bundle, bad)
    (tmp_path / "outside.bin").write_bytes(b"x")
    os.symlink(tmp_path / "outside.bin", bundle / "escape.bin")
    with pytest.raises(QtoolError, match="outside the bundle"):
        safe_member(bundle, "escape.bin")
    os.symlink(bundle / "m.onnx", bundle / "alias.onnx")
    with pytest.raises(QtoolError, match="is a symlink"):
        safe_member(bundle, "alias.onnx")


def test_read_manifest_accepts_a_good_one(bundle):
    assert read_manifest(bundle)["model"]["data_files"] == ["sub/w.bin"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["files"].update({"../up.bin": entry(b"")}), "climbs out"),
        (lambda m: m["model"].update(file="/etc/passwd"), "climbs out"),
        (lambda m: m["model"]["data_files"].append("../w.bin"), "climbs out"),
        (lambda m: m["initializers"].append(tensor("x", "../x")), "climbs out"),
        (lambda m: m.update(ecc={"file": "/tmp/p.ecc", "nsym": 16, "covers": []}), "climbs out"),
        (lambda m: m.update(format="something-else"), "not a qtool bundle manifest"),
        (lambda m: m.update(format_version=99), "upgrade qtool"),
    ],
)
def test_read_manifest_refuses(bundle, change, message):
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest)
    write(bundle, manifest)
    with pytest.raises(QtoolError, match=message):
        read_manifest(bundle)


def test_read_manifest_refuses_what_is_not_a_bundle(bundle, tmp_path):
    with pytest.raises(QtoolError, match="not a bundle folder"):
        read_manifest(bundle / "m.onnx")
    with pytest.raises(QtoolError, match="has no manifest.json"):
        read_manifest(tmp_path)
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(QtoolError, match="not JSON"):
        read_manifest(bundle)


def test_block_crcs_and_changed_blocks():
    data = np.random.default_rng(0).integers(0, 256, 2 * BLOCK + 100, np.uint8).tobytes()
    crcs = block_crcs(data)
    assert crcs == [zlib.crc32(data[i : i + BLOCK]) for i in (0, BLOCK, 2 * BLOCK)]
    assert block_crcs(b"") == [zlib.crc32(b"")]
    record = {"crc32": crcs}
    assert changed_blocks(record, data) == []
    flipped = bytearray(data)
    flipped[BLOCK + 7] ^= 0x01
    assert changed_blocks(record, bytes(flipped)) == [1]
    assert changed_blocks(record, data[: BLOCK + 1]) == [1, 2]  # cut short
