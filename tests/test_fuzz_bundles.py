"""Fuzz: crafted bundles through verify and predict, and crafted flip manifests through
flip --apply/--undo, in-process.

Hypothesis replaces or deletes any field of a real manifest (at any depth) with any small
JSON value, and edits the raw bytes of bundle archives (.tar.gz, .zip). Judged as the issue
counts: no internal error, one stderr line when refused, inputs never changed, and verify
never says intact (exit 0) when a file's bytes differ from the sha256 the manifest lists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mutants
import pytest
from fuzzing import cli, digest, fuzz_settings, json_paths, lies, with_field
from hypothesis import given
from hypothesis import strategies as st

FUZZ = fuzz_settings(30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def made(int8_models, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("fuzz_bundles")
    out = {"dir": folder / "b"}
    assert cli("package", int8_models["cnn"], "--out", out["dir"], "--ecc").exit_code == 0
    for fmt, name in (("tar.gz", "b.tar.gz"), ("zip", "b.zip")):
        out[fmt] = folder / name
        assert cli("package", int8_models["cnn"], "--out", out[fmt], "--format", fmt).exit_code == 0
    return out


def judge(args: list, inputs: Path) -> object:
    before = digest(inputs)
    result = cli(*args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code in (0, 1, 2), result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    if result.exit_code == 2:
        assert len(lines) == 1, result.stderr
    assert digest(inputs) == before
    return result


@FUZZ
@given(choice=st.data())
def test_manifest_field_edits(made, tmp_path_factory, choice):
    manifest = json.loads((made["dir"] / "manifest.json").read_text())
    paths = json_paths(manifest)
    path = paths[choice.draw(st.integers(0, len(paths) - 1), label="path")]
    value = choice.draw(json_values, label="value")
    delete = choice.draw(st.booleans(), label="delete")
    edited = with_field(manifest, path, value, delete)
    folder = tmp_path_factory.mktemp("manifest") / "b"
    shutil.copytree(made["dir"], folder)
    (folder / "manifest.json").write_text(json.dumps(edited, allow_nan=True))
    result = judge(["verify", folder], folder)
    if lies(folder, edited):
        assert result.exit_code != 0, (path, value)
    judge(["predict", folder, folder / "MODEL_CARD.md"], folder)


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
@FUZZ
@given(offset=st.integers(0, 2**20), chunk=st.binary(min_size=1, max_size=8), how=st.integers(0, 2))
def test_archive_byte_edits(made, tmp_path_factory, fmt, offset, chunk, how):
    data = made[fmt].read_bytes()
    edit = (mutants.overwrite, mutants.insert, lambda d, o, _: mutants.truncate(d, o))[how]
    folder = tmp_path_factory.mktemp("archive")
    archive = folder / made[fmt].name
    archive.write_bytes(edit(data, offset, chunk))
    judge(["verify", archive], folder)


@pytest.fixture(scope="module")
def flipped(int8_models, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("flip_manifest")
    out, manifest = folder / "f.onnx", folder / "f.json"
    args = ["flip", int8_models["cnn"], "--bits", "5", "--out", out, "--manifest", manifest]
    assert cli(*args).exit_code == 0
    return {"model": int8_models["cnn"], "out": out, "manifest": manifest}


@FUZZ
@given(choice=st.data())
def test_flip_manifest_field_edits(flipped, tmp_path_factory, choice):
    """--apply and --undo take a manifest from anywhere: any field replaced or deleted is
    a clean refusal (exit 2, or 1 when it does not match the model), never a crash."""
    manifest = json.loads(flipped["manifest"].read_text())
    paths = json_paths(manifest)
    path = paths[choice.draw(st.integers(0, len(paths) - 1), label="path")]
    edited = with_field(
        manifest, path, choice.draw(json_values, label="value"), choice.draw(st.booleans())
    )
    folder = tmp_path_factory.mktemp("replay")
    (folder / "e.json").write_text(json.dumps(edited))
    undo = choice.draw(st.booleans(), label="undo")
    model = flipped["out"] if undo else flipped["model"]
    mode = "--undo" if undo else "--apply"
    out = tmp_path_factory.mktemp("replayed") / "o.onnx"
    judge(["flip", model, mode, folder / "e.json", "--out", out], folder)
