"""Manifests: built by an injection, replayed and undone byte for byte, refused on a mismatch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flip_models import digits_cnn, digits_mlp, external, quantized

from qtool.errors import QtoolError, WorkFailed
from qtool.faults.storage import FlipSettings, inject, load_manifest, replay
from qtool.faults.storage.manifest import MANIFEST_FORMAT, replay_entries
from qtool.modelfile.buffers import write_model_files
from qtool.modelfile.locate import locate_initializers
from qtool.outputs import write_json


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("manifest")
    mlp = digits_mlp(d / "mlp.onnx", hidden=16)
    cnn = digits_cnn(d / "cnn.onnx", channels=4)
    return {
        "mlp": mlp,
        "qop": quantized(cnn, d / "cnn.qop.onnx", "qop"),  # has varint zero points
        "ext": external(mlp, d / "ext"),
    }


def _bytes(path: Path) -> dict[str, bytes]:
    """The model file and the external-data files it names."""
    names = {loc.file for loc in locate_initializers(path.read_bytes()) if loc.file}
    return {name: (path.parent / name).read_bytes() for name in [path.name, *sorted(names)]}


@pytest.mark.parametrize(
    "name, settings",
    [
        ("mlp", FlipSettings(bits=9, seed=1)),
        ("qop", FlipSettings(bits=6, seed=2, targets=("all",), fault="set")),
        ("ext", FlipSettings(bits=5, seed=3, targets=("all",), positions=("exponent",))),
    ],
)
def test_replay_and_undo_are_byte_identical(models, tmp_path, name, settings):
    src = models[name]
    source = _bytes(src)
    injection = inject(src, settings)
    manifest = injection.manifest
    assert manifest["format"] == MANIFEST_FORMAT and len(manifest["flips"]) == settings.bits
    assert manifest["fault"] == settings.fault and manifest["seed"] == settings.seed
    for folder in ("flipped", "again", "back"):
        (tmp_path / folder).mkdir()
    flipped = write_model_files(injection.files, tmp_path / "flipped" / src.name)
    write_json(tmp_path / "m.json", manifest)
    manifest = load_manifest(tmp_path / "m.json")
    again = replay(src, manifest)
    write_model_files(again, tmp_path / "again" / src.name)
    assert _bytes(tmp_path / "again" / src.name) == _bytes(flipped)
    back = replay(flipped, manifest, undo=True)
    write_model_files(back, tmp_path / "back" / src.name)
    assert _bytes(tmp_path / "back" / src.name) == source
    assert _bytes(src) == source  # the input is never modified


def test_replay_refuses_another_model_unless_forced(models, tmp_path):
    manifest = inject(models["mlp"], FlipSettings(bits=3, seed=5)).manifest
    with pytest.raises(QtoolError, match="not the model the manifest was made on"):
        replay(models["qop"], manifest)
    with pytest.raises(QtoolError, match="not the flipped model"):
        replay(models["mlp"], manifest, undo=True)
    with pytest.raises(QtoolError, match="no flippable tensor 'fc1.weight'"):
        replay(models["qop"], manifest, force=True)  # by name: the tensor is not there


def test_entries_must_match_the_bytes(models):
    injection = inject(models["mlp"], FlipSettings(bits=2, seed=6))
    buffers = {None: bytearray(models["mlp"].read_bytes())}
    replay_entries(models["mlp"], buffers, injection.manifest["flips"])
    assert buffers[None] == injection.files.main
    with pytest.raises(WorkFailed, match="manifest expects"):  # applied twice
        replay_entries(models["mlp"], buffers, injection.manifest["flips"])
    replay_entries(models["mlp"], buffers, injection.manifest["flips"], undo=True)
    assert bytes(buffers[None]) == models["mlp"].read_bytes()


def test_entries_say_where_and_what(models):
    manifest = inject(models["mlp"], FlipSettings(bits=4, seed=7, positions=(31,))).manifest
    data = models["mlp"].read_bytes()
    for e in manifest["flips"]:
        assert e["bit"] == 31 and e["bit_in_byte"] == 7 and e["dtype"] == "float"
        assert data[e["byte_offset"]] == e["old_byte"] and e["new_byte"] == e["old_byte"] ^ 0x80
        assert e["new_value"] == -e["old_value"]  # the sign bit of a float32
    assert manifest["eligible_bits"] == sum(t["bits"] for t in manifest["eligible_tensors"])


def test_load_manifest_errors(tmp_path):
    with pytest.raises(QtoolError, match="does not exist"):
        load_manifest(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(QtoolError, match="not JSON"):
        load_manifest(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(QtoolError, match="not a qtool flip manifest"):
        load_manifest(tmp_path / "other.json")
