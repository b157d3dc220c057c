"""The issue's data-set and option examples: each is exit 2 with one line, never a
MemoryError, a hang or a silently wrong accuracy."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from fuzzing import cli, refused

IMAGES = (np.random.default_rng(0).random((6, 8, 8)) * 255).astype(np.uint8)


def npz(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return f"npz:{path}"


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 1, 2, 3, 4, -1], "label -1 is negative"),
        ([0, 1, 2, 3, 4, 2**40], "classes limit"),
        ([0, 1, 2, 3, 4, 100_000], "classes limit"),
        ([0.0, 1.0, 2.5, 3.0, 4.0, 5.0], "label 2.5 is not a whole number"),
        ([0, 1, 2, 3, 4, 12], "label 12 but the model scores 10 classes"),
    ],
)
def test_bad_labels_are_refused(int8_models, tmp_path, labels, message):
    spec = npz(tmp_path / "d.npz", test_images=IMAGES, test_labels=np.array(labels))
    refused(cli("eval", int8_models["cnn"], "--data", spec), match=message)


def test_labels_beyond_the_named_classes_are_refused(int8_models, tmp_path):
    spec = npz(
        tmp_path / "d.npz",
        test_images=IMAGES,
        test_labels=np.array([0, 1, 2, 3, 4, 3]),
        class_names=np.array(["a", "b", "c"]),
    )
    refused(cli("eval", int8_models["cnn"], "--data", spec), match="out of range for 3 classes")


def test_whole_float_labels_are_accepted(int8_models, tmp_path):
    spec = npz(tmp_path / "d.npz", test_images=IMAGES, test_labels=np.arange(6.0))
    assert cli("eval", int8_models["cnn"], "--data", spec).exit_code == 0


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (IMAGES.astype(np.float64), "float images must lie in [0, 1]"),
        (IMAGES.astype(np.uint16) * 200, "images of type uint16"),
        (np.where(IMAGES > 128, np.nan, 0.5), "with NaN or Inf"),
    ],
)
def test_images_that_would_be_misread_are_refused(int8_models, tmp_path, images, message):
    spec = npz(tmp_path / "d.npz", test_images=images, test_labels=np.arange(6))
    refused(cli("eval", int8_models["cnn"], "--data", spec), match=message)


def _npz_with_header(path: Path, shape: tuple, dtype: str = "<u1") -> None:
    """An .npz whose .npy header claims `shape` over a few bytes of data (a bomb's header)."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + bytes(64)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("test_images.npy", npy)
        zf.writestr("test_labels.npy", npy)


def test_npz_bombs_are_refused_from_their_headers(int8_models, tmp_path):
    _npz_with_header(tmp_path / "claims.npz", (2**31, 8, 8))
    line = refused(cli("eval", int8_models["cnn"], "--data", f"npz:{tmp_path / 'claims.npz'}"))
    assert "data-bytes limit" in line and "--limit data-bytes=N" in line
    zeros = tmp_path / "zeros.npz"  # 8 MiB of zeros in a few KiB, under a lowered limit
    np.savez_compressed(zeros, test_images=np.zeros((2**17, 8, 8), np.uint8))
    assert zeros.stat().st_size < 2**16
    result = cli("--limit", "data-bytes=1M", "eval", int8_models["cnn"], "--data", f"npz:{zeros}")
    refused(result, match="data-bytes limit of 1 MiB")


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG declaring width x height grey pixels with almost no data (Pillow opens it
    lazily: only the header is read before the size check)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_image_over_the_pixel_limit_is_refused_before_decoding(int8_models, tmp_path):
    root = tmp_path / "set"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        _png_header(root / name / "x.png", 20_000, 10_000)  # 200 Mpx: Pillow's bomb size
    line = refused(cli("eval", int8_models["cnn"], "--data", f"folder:{root}"))
    assert "over the limit of 134,217,728" in line and "qtool --limit pixels=N" in line
    bundle = tmp_path / "bundle"
    assert cli("package", int8_models["cnn"], "--out", bundle).exit_code == 0
    line = refused(cli("predict", bundle, root / "a" / "x.png"))
    assert line.startswith("error: --max-pixels:")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_in_an_image_folder_is_refused_not_read(int8_models, tmp_path):
    """A FIFO named x.png blocked eval forever; now it is refused (run as a real process with
    a timeout, so a regression fails instead of hanging the suite)."""
    root = tmp_path / "set"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    os.mkfifo(root / "a" / "x.png")
    cmd = [sys.executable, "-m", "qtool.cli", "eval", str(int8_models["cnn"]), "--data",
           f"folder:{root}"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "FIFO" in done.stderr


def test_positive_class_the_model_lacks(int8_models):
    refused(
        cli("eval", int8_models["mlp"], "--data", "breast-cancer", "--positive-class", "5"),
        match="positive class 5 does not exist",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["flip", "{m}", "--bits", "1,2", "--trials", "0", "--data", "digits"], "--trials"),
        (["flip", "{m}", "--bits", "1", "--trials", "1e9", "--data", "digits"], "--trials"),
        (["flip", "{m}", "--bits", "1", "--trials", str(10**9), "--data", "digits"],
         "trials limit"),
        (["bench", "{m}", "--batch", str(10**9), "--runs", "2"], "batch limit"),
        (["bench", "{m}", "--threads", "999", "--runs", "2"], "threads limit"),
        (["flip", "{m}", "--bits", "1", "--trials", "2", "--data", "digits", "--workers", "999"],
         "threads limit"),
    ],
)  # fmt: skip
def test_option_values_over_their_limits(int8_models, args, message):
    argv = [a.replace("{m}", str(int8_models["cnn"])) for a in args]
    refused(cli(*argv), match=message)


def test_quantizing_an_int8_model_is_refused(int8_models, tmp_path):
    result = cli("quantize", int8_models["cnn"], "--calib", "digits", "--out", tmp_path / "q.onnx")
    refused(result, match="already quantised (QDQ)")
    assert list(tmp_path.iterdir()) == []
