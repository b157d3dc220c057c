"""deploy.verify: a changed byte is attributed to its tensor and 4 KiB block (and, with ECC,
element and bit); length changes, missing files and graph bytes are reported as such;
repair restores the exact bytes or refuses."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest
from builders import conv_model, save

from qtool.deploy.archive import write_archive
from qtool.deploy.bundle import package
from qtool.deploy.manifest import read_manifest
from qtool.deploy.verify import BitChange, TensorChange, verify
from qtool.errors import QtoolError


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """The conv model (wf: 256x10 float32, three 4 KiB blocks) packaged with and without ECC."""
    tmp = tmp_path_factory.mktemp("verify")
    model = save(conv_model(), tmp / "conv.onnx")
    package(model, tmp / "ecc", ecc=True)
    package(model, tmp / "plain")
    return tmp


@pytest.fixture
def ecc_bundle(bundles, tmp_path):
    shutil.copytree(bundles / "ecc", tmp_path / "ecc")
    return tmp_path / "ecc"


@pytest.fixture
def plain_bundle(bundles, tmp_path):
    shutil.copytree(bundles / "plain", tmp_path / "plain")
    return tmp_path / "plain"


def record(bundle, name):
    return next(r for r in read_manifest(bundle)["initializers"] if r["name"] == name)


def flip(path, offset: int, mask: int) -> tuple[int, int]:
    data = bytearray(path.read_bytes())
    old = data[offset]
    data[offset] ^= mask
    path.write_bytes(bytes(data))
    return old, data[offset]


def test_flipped_byte_names_tensor_and_block_without_ecc(plain_bundle):
    wf = record(plain_bundle, "wf")
    flip(plain_bundle / "conv.onnx", wf["offset"] + 4 * 1300 + 1, 0x20)  # byte 5201: block 1
    result = verify(plain_bundle)
    assert not result.intact and result.changed_files == ["conv.onnx"]
    assert result.tensors == [TensorChange("wf", "conv.onnx", [1])]
    assert not result.ecc_used and result.missing_files == []


def test_ecc_locates_element_and_bit(ecc_bundle):
    wf, bc = record(ecc_bundle, "wf"), record(ecc_bundle, "bc")
    model = ecc_bundle / "conv.onnx"
    old, new = flip(model, wf["offset"] + 4 * 1300 + 1, 0x20)  # element 1300, bit 13
    bc_old, bc_new = flip(model, bc["offset"] + 4 * 2 + 3, 0x80)  # element 2, sign bit
    result = verify(ecc_bundle)
    assert result.ecc_used and result.uncorrectable_chunks == {}
    by_name = {t.name: t for t in result.tensors}
    assert by_name["wf"].blocks == [1] and by_name["bc"].blocks == [0]
    assert by_name["wf"].bits == [BitChange(wf["offset"] + 5201, 1300, 13, old, new)]
    assert by_name["bc"].bits == [BitChange(bc["offset"] + 11, 2, 31, bc_old, bc_new)]
    assert result.changed_bytes == 2


def test_changed_graph_byte_is_outside_every_tensor(ecc_bundle, plain_bundle):
    offset = (ecc_bundle / "conv.onnx").read_bytes().index(b"Relu")
    old, new = flip(ecc_bundle / "conv.onnx", offset, 0x01)
    result = verify(ecc_bundle)
    assert result.tensors == [] and result.changed_files == ["conv.onnx"]
    assert result.outside_tensors == [
        {"file": "conv.onnx", "offset": offset, "old": old, "new": new}
    ]
    flip(plain_bundle / "conv.onnx", offset, 0x01)
    plain = verify(plain_bundle)
    assert not plain.intact and plain.tensors == [] and plain.outside_tensors == []


def test_inserted_byte_is_a_length_change_and_is_not_repaired(ecc_bundle):
    model = ecc_bundle / "conv.onnx"
    data = model.read_bytes()
    wf = record(ecc_bundle, "wf")
    cut = wf["offset"] + 100
    model.write_bytes(data[:cut] + b"\0" + data[cut:])
    result = verify(ecc_bundle, do_repair=True)
    assert result.length_changed == {"conv.onnx": [len(data), len(data) + 1]}
    assert "wf" in [t.name for t in result.tensors]
    assert not result.repaired and not result.intact and result.repaired_files == []
    assert len(model.read_bytes()) == len(data) + 1  # left as found


def test_missing_file_is_reported_and_blocks_repair(ecc_bundle):
    os.remove(ecc_bundle / "MODEL_CARD.md")
    result = verify(ecc_bundle)
    assert result.missing_files == ["MODEL_CARD.md"] and result.changed_files == []
    assert not result.intact
    with pytest.raises(QtoolError, match="missing files MODEL_CARD.md") as caught:
        verify(ecc_bundle, do_repair=True)
    assert caught.value.param == "repair"


def test_repair_restores_the_exact_bytes(ecc_bundle):
    model = ecc_bundle / "conv.onnx"
    original = hashlib.sha256(model.read_bytes()).hexdigest()
    wf = record(ecc_bundle, "wf")
    for i in range(40):  # 40 bytes over the tensor: a few per 239-byte chunk
        flip(model, wf["offset"] + 250 * i + 3, 0xFF)
    result = verify(ecc_bundle, do_repair=True)
    assert result.repaired and result.intact and result.repaired_files == ["conv.onnx"]
    assert hashlib.sha256(model.read_bytes()).hexdigest() == original
    assert len(result.tensors[0].bits) == 40 * 8
    assert verify(ecc_bundle).intact


def test_damaged_parity_is_rebuilt_from_verified_data(ecc_bundle):
    parity = ecc_bundle / "model.ecc"
    before = parity.read_bytes()
    flip(parity, 10, 0x01)
    result = verify(ecc_bundle, do_repair=True)
    assert result.repaired and result.repaired_files == ["model.ecc"]
    assert parity.read_bytes() == before


def test_without_parity_there_is_no_repair(plain_bundle):
    flip(plain_bundle / "conv.onnx", record(plain_bundle, "wc")["offset"], 0x01)
    with pytest.raises(QtoolError, match="without ECC parity") as caught:
        verify(plain_bundle, do_repair=True)
    assert caught.value.param == "repair"


def test_archives_are_verified_but_not_repaired(ecc_bundle, tmp_path):
    flip(ecc_bundle / "conv.onnx", record(ecc_bundle, "wf")["offset"] + 8, 0x04)
    archive = tmp_path / "b.tar.gz"
    write_archive(ecc_bundle, archive, "tar.gz")
    result = verify(archive)
    assert result.bundle == str(archive)
    assert [(t.name, [(b.element, b.bit) for b in t.bits]) for t in result.tensors] == [
        ("wf", [(2, 2)])
    ]
    with pytest.raises(QtoolError, match="not repaired in place") as caught:
        verify(archive, do_repair=True)
    assert caught.value.param == "repair"


def test_pinned_manifest_sha256(ecc_bundle):
    sha = hashlib.sha256((ecc_bundle / "manifest.json").read_bytes()).hexdigest()
    assert verify(ecc_bundle, expect_manifest_sha256=sha.upper()).manifest_sha256 == sha
    with pytest.raises(QtoolError, match="manifest itself was replaced") as caught:
        verify(ecc_bundle, expect_manifest_sha256="0" * 64)
    assert caught.value.param == "manifest_sha256"
