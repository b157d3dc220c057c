"""A model and its external-data files as buffers: read whole, hashed, written back."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
import pytest
from flip_models import digits_mlp, external

from qtool.errors import QtoolError
from qtool.modelfile.buffers import (
    changed_files,
    read_model_files,
    sha256_pair,
    write_model_files,
)


@pytest.fixture(scope="module")
def ext(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("buffers")
    return external(digits_mlp(d / "mlp.onnx", hidden=8), d / "ext")


def test_read_holds_every_file(ext):
    files = read_model_files(ext)
    assert files.main == ext.read_bytes()
    assert files.external == {"weights.bin": bytearray((ext.parent / "weights.bin").read_bytes())}
    assert set(files.buffers()) == {None, "weights.bin"}
    assert files.sha256()[""] == hashlib.sha256(ext.read_bytes()).hexdigest()


def test_write_copies_unchanged_and_writes_changed(ext, tmp_path):
    files = read_model_files(ext)
    before = files.sha256()
    files.external["weights.bin"][10] ^= 0xFF
    assert changed_files(before, files) == {"weights.bin"}
    out = write_model_files(files, tmp_path / "m.onnx")
    assert (tmp_path / "weights.bin").read_bytes() == files.external["weights.bin"]
    assert onnx.load(str(out)).graph.initializer  # loads with its external data
    clean = read_model_files(ext)
    write_model_files(clean, tmp_path / "m.onnx", force=True)
    assert (tmp_path / "weights.bin").read_bytes() == (ext.parent / "weights.bin").read_bytes()


def test_write_refusals(ext, tmp_path):
    files = read_model_files(ext)
    with pytest.raises(QtoolError, match="another folder") as caught:
        write_model_files(files, ext.parent / "copy.onnx")
    assert caught.value.param == "out"
    (tmp_path / "weights.bin").write_bytes(b"keep")
    with pytest.raises(QtoolError, match="already exists"):
        write_model_files(files, tmp_path / "m.onnx")
    assert (tmp_path / "weights.bin").read_bytes() == b"keep"


def test_read_refusals(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 64)
    with pytest.raises(QtoolError, match="not an ONNX model"):
        read_model_files(tmp_path / "junk.onnx")
    with pytest.raises(QtoolError, match="does not exist"):
        read_model_files(tmp_path / "none.onnx")
    with pytest.raises(QtoolError, match="is a directory"):
        read_model_files(tmp_path)


def test_sha256_pair_hashes_the_patched_bytes_without_copying():
    buf = bytearray(range(256)) * 100
    source, patched = sha256_pair(buf, {0: 7, 300: 0, 25599: 1})
    expected = bytearray(buf)
    expected[0], expected[300], expected[25599] = 7, 0, 1
    assert source == hashlib.sha256(buf).hexdigest()
    assert patched == hashlib.sha256(expected).hexdigest()
    assert buf[0] == 0  # the buffer itself is unchanged
