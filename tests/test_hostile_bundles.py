"""The issue's bundle examples: crafted manifests and archives are exit 2 with one line
before anything is trusted or extracted; a manifest that does not hash the model vouches
for nothing."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from fuzzing import cli, refused


@pytest.fixture(scope="module")
def clean_bundle(int8_models, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "bundle"
    assert cli("package", int8_models["cnn"], "--out", out, "--ecc").exit_code == 0
    return out


@pytest.fixture
def bundle(clean_bundle, tmp_path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(clean_bundle, copy)
    return copy


def edit(bundle: Path, change) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def flip_model_byte(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    record = max(manifest["initializers"], key=lambda r: r["length"])
    path = bundle / manifest["model"]["file"]
    data = bytearray(path.read_bytes())
    data[record["offset"] + 3] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.update(files={}),
        lambda m: m["files"].pop(m["model"]["file"]),
    ],
    ids=["files-empty", "no-model-entry"],
)
def test_a_manifest_that_does_not_hash_the_model_verifies_nothing(bundle, change):
    flip_model_byte(bundle)
    edit(bundle, change)
    refused(cli("verify", bundle), match="the bundle is damaged or was not made by qtool")
    refused(cli("predict", bundle, bundle / "MODEL_CARD.md"))


def test_a_symlinked_manifest_is_refused(bundle, tmp_path):
    outside = tmp_path / "elsewhere.json"
    shutil.move(bundle / "manifest.json", outside)
    os.symlink(outside, bundle / "manifest.json")
    refused(cli("verify", bundle), match="is a symlink")


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(files=list(m["files"])), "'files' is not a non-empty object"),
        (lambda m: m.pop("model"), "'model' does not name the model file"),
        (lambda m: m["model"].pop("file"), "'model' does not name the model file"),
        (lambda m: m["initializers"][0].pop("offset"), "initializers[0] has no valid 'offset'"),
        (lambda m: m["initializers"][0].update(length=-5), "no valid 'length'"),
        (lambda m: m["initializers"].append("x"), "is not an object"),
        (lambda m: m["ecc"].update(nsym=0), "ecc.nsym 0"),
        (lambda m: m["ecc"].update(nsym=300), "ecc.nsym 300"),
        (lambda m: m["ecc"].update(covers={}), "ecc.covers is not a list"),
        (lambda m: m["files"]["MODEL_CARD.md"].update(bytes="12"), "needs a sha256"),
        (lambda m: m.update(format_version="1"), "format_version"),
        (lambda m: m.update(reports={"deep": json.loads("[" * 200 + "]" * 200)}), "json-depth"),
        (lambda m: m.update(runtime=1), "'runtime' is not an object"),
        (lambda m: m.update(runtime={"provider": 5}), "'runtime' has no valid 'provider'"),
        (
            lambda m: m.update(runtime={"provider": "cpu", "precision": []}),
            "runtime.precision is not a name",
        ),
    ],
)
def test_malformed_manifest_fields(bundle, change, message):
    edit(bundle, change)
    refused(cli("verify", bundle), match=message)


def test_predict_refuses_a_runtime_record_that_is_not_one(bundle):
    """Found by the manifest fuzz test: `runtime: 1` was an internal error in predict."""
    edit(bundle, lambda m: m.update(runtime=1))
    refused(cli("predict", bundle, bundle / "MODEL_CARD.md"), match="'runtime' is not an object")


def test_a_manifest_nested_100k_deep(bundle):
    (bundle / "manifest.json").write_text(DEEP)
    refused(cli("verify", bundle), match="json-depth")


def _zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def test_a_duplicate_manifest_member_is_refused(clean_bundle, tmp_path):
    members = [(f"b/{p.name}", p.read_bytes()) for p in sorted(clean_bundle.iterdir())]
    forged = json.dumps({"format": "qtool-bundle", "files": {}}).encode()
    archive = tmp_path / "dup.zip"
    with pytest.warns(UserWarning, match="Duplicate name"):
        _zip(archive, [*members, ("b/manifest.json", forged)])
    refused(cli("verify", archive), match="appears twice")


def _bomb_members(mib: int) -> list[tuple[str, bytes]]:
    return [("b/manifest.json", b"{}"), ("b/zeros.bin", bytes(mib * 2**20))]


def test_zip_and_tar_bombs_are_refused_before_extraction(tmp_path):
    bomb = _zip(tmp_path / "bomb.zip", _bomb_members(80))  # 80 MiB in about 80 KiB
    line = refused(cli("verify", bomb))
    assert "bundle-ratio limit of 100" in line and "--limit bundle-ratio=N" in line
    tar_bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(tar_bomb, "w:gz") as tar:
        for name, data in _bomb_members(80):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    refused(cli("verify", tar_bomb), match="bundle-ratio limit")
    refused(cli("predict", tar_bomb, tmp_path / "x.png"), match="bundle-ratio limit")
    refused(cli("--limit", "bundle-bytes=1M", "verify", bomb), match="bundle-bytes limit of 1 MiB")


def test_archive_member_count_is_limited(tmp_path):
    many = _zip(tmp_path / "many.zip", [(f"b/f{i}.txt", b"x") for i in range(20)])
    refused(cli("--limit", "bundle-files=10", "verify", many), match="bundle-files limit of 10")


def test_a_forged_but_consistent_bundle_of_junk_is_refused_by_predict(bundle, tmp_path):
    """An attacker who can write an unsigned bundle makes the manifest vouch for junk bytes:
    verify says intact (the hashes match), predict refuses the junk as a model."""
    import hashlib

    junk = b"\x08\x07" + os.urandom(200)
    model_file = json.loads((bundle / "manifest.json").read_text())["model"]["file"]
    (bundle / model_file).write_bytes(junk)

    def vouch(m):
        m["files"][model_file] = {"sha256": hashlib.sha256(junk).hexdigest(), "bytes": len(junk)}
        m["ecc"] = None
        m["initializers"] = []
        m["files"].pop("model.ecc")

    edit(bundle, vouch)
    (bundle / "model.ecc").unlink()
    assert cli("verify", bundle).exit_code == 0
    refused(cli("predict", bundle, bundle / "MODEL_CARD.md"), match="not an ONNX model")
