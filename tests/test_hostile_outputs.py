"""The issue's output examples: no output may be an input or another output, with or without
--force; a folder never replaces a file (or the reverse); unwritable places are one line
before any work; temp files are recognisable, removed on failure, swept after a kill; the
flipped model and its manifest are written as one unit."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from fuzzing import cli, refused

from qtool.errors import QtoolError
from qtool.modelfile.buffers import read_model_files, write_model_files
from qtool.outputs import (
    HOST_TAG,
    TEMP_MARK,
    atomic_write,
    check_output_path,
    stale_prefix,
    sweep_stale,
    temp_prefix,
)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def model(int8_models, tmp_path) -> Path:
    path = tmp_path / "a.onnx"
    shutil.copyfile(int8_models["mlp"], path)
    return path


@pytest.mark.parametrize("fmt", ["dir", "tar.gz", "zip"])
def test_package_out_equal_to_the_model_is_refused(model, fmt):
    before = sha(model)
    refused(cli("package", model, "--out", model, "--force", "--format", fmt), match="input")
    assert model.is_file() and sha(model) == before


def test_package_out_equal_to_a_report_is_refused(model, tmp_path):
    report = tmp_path / "r.json"
    report.write_text("{}")
    for fmt in ("dir", "zip"):
        result = cli(
            "package", model, "--out", report, "--report", report, "--force", "--format", fmt
        )
        refused(result, match="input")
    assert report.read_text() == "{}"


@pytest.mark.parametrize("second", ["--manifest", "--json"])
@pytest.mark.parametrize("force", [[], ["--force"]])
def test_flip_outputs_naming_one_file_are_refused(model, tmp_path, second, force):
    x = tmp_path / "X"
    refused(cli("flip", model, "--bits", "1", "--out", x, second, x, *force), match="same file")
    assert not x.exists()


def test_package_zip_needs_an_archive_name(model, tmp_path):
    refused(cli("package", model, "--format", "zip", "--out", tmp_path / "plainname"), match=".zip")
    assert not (tmp_path / "plainname").exists()
    assert cli("package", model, "--format", "zip", "--out", tmp_path / "b.zip").exit_code == 0
    assert cli("verify", tmp_path / "b.zip").exit_code == 0


def test_force_never_swaps_a_file_and_a_folder(model, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    refused(cli("flip", model, "--bits", "1", "--out", folder, "--force"), match="directory")
    plain = tmp_path / "plain"
    plain.write_text("keep")
    refused(cli("package", model, "--out", plain, "--force"), match="is a file")
    assert plain.read_text() == "keep" and folder.is_dir()


def test_output_whose_parent_is_a_file_or_whose_name_is_too_long(model, tmp_path):
    (tmp_path / "f").write_text("x")
    refused(cli("flip", model, "--bits", "1", "--out", tmp_path / "f" / "x.onnx"), match="folder")
    refused(cli("flip", model, "--bits", "1", "--out", tmp_path / ("x" * 300)), match="255")
    deep = tmp_path.joinpath(*["d" * 200] * 25) / "x.onnx"  # a path over PATH_MAX
    refused(cli("flip", model, "--bits", "1", "--out", deep))


def _immutable(folder: Path) -> bool:
    """Make `folder` unwritable: chmod for a normal user, chattr +i for root (root ignores
    permissions); False when neither works here."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return True
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    return shutil.which("chattr") is not None and done.returncode == 0


def _writable(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True, check=False)
    folder.chmod(0o755)


def test_unwritable_folder_is_refused_before_any_work(model, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    if not _immutable(locked):
        pytest.skip("cannot make a folder unwritable here (no chattr as root)")
    try:
        line = refused(cli("flip", model, "--bits", "1", "--out", locked / "f.onnx"))
        assert "cannot write" in line and "--out" in line
        refused(cli("package", model, "--out", locked / "bundle"), match="cannot write")
        refused(cli("inspect", model, "--json", locked / "s.json"), match="cannot write")
    finally:
        _writable(locked)
    assert list(locked.iterdir()) == []


def test_temp_names_are_recognisable_and_failed_writes_leave_nothing(tmp_path):
    out = tmp_path / "m.onnx"
    assert temp_prefix(out).startswith(f".m.onnx{TEMP_MARK}{HOST_TAG}-{os.getpid()}-")

    def boom(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(out, boom)
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_dead_processes_are_swept_by_the_next_write(tmp_path):
    out = tmp_path / "m.onnx"
    proc = subprocess.Popen(["true"])
    proc.wait()
    stale_file = tmp_path / f"{stale_prefix(out)}{HOST_TAG}-{proc.pid}-abc"
    stale_dir = tmp_path / f"{stale_prefix(out)}{HOST_TAG}-{proc.pid}-def"
    other_host = tmp_path / f"{stale_prefix(out)}zzzzzz-{proc.pid}-ghi"
    alive = tmp_path / f"{stale_prefix(out)}{HOST_TAG}-{os.getpid()}-jkl"
    stale_file.write_bytes(b"x" * 100)
    stale_dir.mkdir()
    (stale_dir / "inner").write_text("y")
    other_host.write_text("not ours to judge")
    alive.write_text("a live run's")
    atomic_write(out, b"model")
    assert not stale_file.exists() and not stale_dir.exists()
    assert other_host.exists() and alive.exists() and out.read_bytes() == b"model"
    assert sweep_stale(tmp_path, stale_prefix(out)) == []


def test_check_output_path_refuses_an_output_inside_an_input_folder(tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "m.onnx").write_text("x")
    with pytest.raises(QtoolError, match="holds the input"):
        check_output_path(tmp_path / "bundle", True, [folder / "m.onnx"], kind="dir")


def test_model_and_manifest_are_written_as_one_unit_under_races(int8_models, tmp_path):
    """Threads stand in for processes (flock locks separate open files alike): whatever the
    interleaving, the manifest on disk describes the model on disk."""
    files = [read_model_files(int8_models["cnn"]) for _ in range(2)]
    for seed, f in enumerate(files):
        f.main[-1] ^= seed + 1  # two different "flipped" models
    out, manifest = tmp_path / "f.onnx", tmp_path / "f.json"

    def write(f) -> None:
        for _ in range(15):
            payload = {"sha256": hashlib.sha256(f.main).hexdigest()}
            write_model_files(f, out, force=True, manifest=(manifest, payload))

    threads = [threading.Thread(target=write, args=(f,)) for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert json.loads(manifest.read_text())["sha256"] == sha(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json", "f.onnx"]


def test_flip_manifest_records_the_model_it_sits_beside(model, tmp_path):
    out, manifest = tmp_path / "f.onnx", tmp_path / "f.json"
    for seed in ("1", "2"):
        args = ("flip", model, "--bits", "3", "--seed", seed, "--out", out, "--manifest", manifest)
        assert cli(*args, "--force").exit_code == 0
    record = json.loads(manifest.read_text())
    assert record["seed"] == 2 and record["flipped_sha256"] == sha(out)
