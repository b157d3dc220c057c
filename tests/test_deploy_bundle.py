"""deploy.bundle: the manifest's records match the bundled bytes, checked independently with
hashlib, zlib, numpy_helper and reedsolo; packaging refuses bad arguments before any work."""

from __future__ import annotations

import hashlib
import json
import tarfile
import zipfile
import zlib

import numpy as np
import onnx
import pytest
import reedsolo
from builders import conv_model, digits_linear_weights, linear_image_model, save
from onnx import numpy_helper

from qtool.deploy.bundle import package
from qtool.errors import QtoolError
from qtool.modelfile.metadata import set_metadata
from qtool.modelfile.save import save_model


@pytest.fixture
def external_model(tmp_path):
    """conv_model with its large tensors in conv.onnx.data (wf: 10 KiB, three CRC blocks)."""
    src = tmp_path / "src"
    src.mkdir()
    model = conv_model()
    set_metadata(model, {"qtool.class_names": [str(i) for i in range(10)], "qtool.model": "c"})
    return save_model(model, src / "conv.onnx", external=True)


def manifest_of(folder):
    return json.loads((folder / "manifest.json").read_text())


def test_records_match_the_bytes(tmp_path, external_model):
    result = package(external_model, tmp_path / "b", ecc=True)
    folder = tmp_path / "b"
    m = manifest_of(folder)
    assert m["model"] == {"file": "conv.onnx", "data_files": ["conv.onnx.data"]}
    for name in ("conv.onnx", "conv.onnx.data"):  # copied unchanged
        assert (folder / name).read_bytes() == (external_model.parent / name).read_bytes()
    for rel, info in m["files"].items():
        data = (folder / rel).read_bytes()
        assert info == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert sorted(m["files"]) == ["MODEL_CARD.md", "conv.onnx", "conv.onnx.data", "model.ecc"]
    reference = {t.name: t for t in onnx.load(str(external_model)).graph.initializer}
    for r in m["initializers"]:
        piece = (folder / r["file"]).read_bytes()[r["offset"] : r["offset"] + r["length"]]
        assert r["sha256"] == hashlib.sha256(piece).hexdigest()
        blocks = [piece[i : i + 4096] for i in range(0, len(piece), 4096)]
        assert r["crc32"] == [zlib.crc32(b) for b in blocks] and r["block_bytes"] == 4096
        expected = numpy_helper.to_array(reference[r["name"]])
        assert r["shape"] == list(expected.shape) and r["dtype"] == "float"
        np.testing.assert_array_equal(np.frombuffer(piece, "<f4").reshape(expected.shape), expected)
    records = {r["name"]: r for r in m["initializers"]}
    assert len(records["wf"]["crc32"]) == 3 and records["wf"]["file"] == "conv.onnx.data"
    assert records["wc"]["file"] == "conv.onnx"  # small: stays inside the model file
    assert {r["name"]: r["role"] for r in m["initializers"]} == {
        "wc": "weight", "bc": "bias", "wf": "weight", "bf": "bias"
    }  # fmt: skip
    assert result.initializers == 4 and result.weight_bytes == 4 * (36 + 4 + 2560 + 10)
    assert (
        result.manifest_sha256
        == hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    )
    assert m["class_names"][9] == "9" and m["model_name"] == "c"


def test_ecc_parity_covers_every_model_byte(tmp_path, external_model):
    package(external_model, tmp_path / "b", ecc=True, nsym=32)
    folder = tmp_path / "b"
    ecc = manifest_of(folder)["ecc"]
    assert (ecc["nsym"], ecc["chunk_bytes"], ecc["correctable_bytes_per_chunk"]) == (32, 223, 16)
    codec = reedsolo.RSCodec(32)
    blob = (folder / "model.ecc").read_bytes()
    for cover in ecc["covers"]:
        data = (folder / cover["file"]).read_bytes()
        assert cover["bytes"] == len(data)
        parity = blob[cover["parity_offset"] : cover["parity_offset"] + cover["parity_bytes"]]
        expected = b"".join(
            bytes(codec.encode(data[i : i + 223]))[len(data[i : i + 223]) :]
            for i in range(0, len(data), 223)
        )
        assert parity == expected
    assert [c["file"] for c in ecc["covers"]] == ["conv.onnx", "conv.onnx.data"]
    assert ecc["overhead"] == pytest.approx(len(blob) / sum(c["bytes"] for c in ecc["covers"]))


def test_reports_are_bundled_unchanged(tmp_path):
    w, b = digits_linear_weights()
    model = save(linear_image_model(w, b), tmp_path / "lin.onnx")
    (tmp_path / "a").mkdir()
    first, second = tmp_path / "eval.json", tmp_path / "a" / "eval.json"
    first.write_text(json.dumps({"accuracy": 0.9, "confusion": [[1]]}))
    second.write_text(json.dumps({"accuracy": 0.8, "confusion": [[1]]}))
    package(model, tmp_path / "b", report_paths=[first, second])
    m = manifest_of(tmp_path / "b")
    assert m["reports"] == {"eval.json": {"accuracy": 0.9, "confusion": [[1]]},
                            "_eval.json": {"accuracy": 0.8, "confusion": [[1]]}}  # fmt: skip
    saved = json.loads((tmp_path / "b" / "reports" / "_eval.json").read_text())
    assert saved == {"accuracy": 0.8, "confusion": [[1]]}
    assert m["ecc"] is None and "model.ecc" not in m["files"]


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_archive_formats_hold_the_same_bundle(tmp_path, fmt):
    w, b = digits_linear_weights()
    model = save(linear_image_model(w, b), tmp_path / "lin.onnx")
    out = tmp_path / f"bundle.{fmt}"
    result = package(model, out, fmt=fmt)
    if fmt == "zip":
        with zipfile.ZipFile(out) as zf:
            names = sorted(zf.namelist())
    else:
        with tarfile.open(out) as tar:
            names = sorted(tar.getnames())
    assert names == sorted(f"bundle/{rel}" for rel in [*result.files, "manifest.json"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging


def test_bad_arguments_are_refused_before_any_work(tmp_path):
    w, b = digits_linear_weights()
    model = save(linear_image_model(w, b), tmp_path / "lin.onnx")
    cases = [
        (dict(fmt="rar"), "fmt", "unknown bundle format"),
        (dict(nsym=7), "ecc_nsym", "even number"),
        (dict(nsym=130), "ecc_nsym", "even number"),
        (dict(report_paths=[tmp_path / "none.json"]), "report_paths", "does not exist"),
        (dict(report_paths=[model]), "report_paths", "not JSON"),
    ]
    for kwargs, param, message in cases:
        with pytest.raises(QtoolError, match=message) as caught:
            package(model, tmp_path / "b", **kwargs)
        assert caught.value.param == param
        assert not (tmp_path / "b").exists()
    with pytest.raises(QtoolError, match="is the input") as caught:
        package(model, model, fmt="zip", force=True)
    assert caught.value.param == "out"
    package(model, tmp_path / "b")
    with pytest.raises(QtoolError, match="already exists"):
        package(model, tmp_path / "b")
    (tmp_path / "b" / "stale.txt").write_text("old")
    package(model, tmp_path / "b", force=True)
    assert not (tmp_path / "b" / "stale.txt").exists()
