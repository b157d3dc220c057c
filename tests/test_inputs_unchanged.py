"""No command modifies its input files (sha256 before and after), whatever it writes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from builders import digits_linear_weights, linear_image_model, save
from click.testing import CliRunner

from qtool.cli import main


def digest(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    w, b = digits_linear_weights()
    save(linear_image_model(w, b), folder / "m.onnx")
    save(linear_image_model(w * 1.01, b), folder / "m2.onnx")
    result = CliRunner().invoke(
        main, ["package", str(folder / "m.onnx"), "--out", str(folder / "bundle"), "--ecc"]
    )
    assert result.exit_code == 0, result.output
    images = (np.random.default_rng(0).random((3, 8, 8)) * 255).astype(np.uint8)
    np.savez(folder / "samples.npz", images=images)
    try:  # inputs of the signing and DICOM cases, when those extras are installed
        from dicom_files import write_dicom

        from qtool.deploy.signing import generate_keypair

        generate_keypair(folder / "release.key")
        write_dicom(folder / "scan.dcm", images)
    except ImportError:
        pass
    return folder


COMMANDS = {
    "inspect": ["inspect", "{in}/m.onnx", "--json", "{out}/s.json"],
    "eval": ["eval", "{in}/m.onnx", "--data", "digits", "--json", "{out}/e.json"],
    "quantize": [
        "quantize",
        "{in}/m.onnx",
        "--calib",
        "digits",
        "--samples",
        "64",
        "--out",
        "{out}/q.onnx",
        "--json",
        "{out}/q.json",
    ],
    "bench": [
        "bench",
        "{in}/m.onnx",
        "{in}/m2.onnx",
        "--runs",
        "20",
        "--energy",
        "off",
        "--json",
        "{out}/b.json",
    ],
    "flip": [
        "flip",
        "{in}/m.onnx",
        "--bits",
        "3",
        "--out",
        "{out}/f.onnx",
        "--manifest",
        "{out}/f.json",
        "--data",
        "digits",
    ],
    "campaign": [
        "flip",
        "{in}/m.onnx",
        "{in}/m2.onnx",
        "--bits",
        "1,2",
        "--trials",
        "2",
        "--data",
        "digits",
        "--json",
        "{out}/c.json",
    ],
    "package": ["package", "{in}/m.onnx", "--out", "{out}/bundle", "--ecc"],
    "verify": ["verify", "{in}/bundle", "--json", "{out}/v.json"],
    "predict": ["predict", "{in}/bundle", "{in}/samples.npz", "--json", "{out}/p.json"],
    "package-sign": [
        "package",
        "{in}/m.onnx",
        "--out",
        "{out}/signed",
        "--sign",
        "{in}/release.key",
    ],
    "predict-dicom": ["predict", "{in}/bundle", "{in}/scan.dcm", "--json", "{out}/d.json"],
}
NEEDS = {"package-sign": "release.key", "predict-dicom": "scan.dcm"}  # files of optional extras


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_leaves_inputs_unchanged(tmp_path, inputs, name):
    if name in NEEDS and not (inputs / NEEDS[name]).exists():
        pytest.skip(f"{name} needs an optional extra that is not installed")
    out = tmp_path / "out"
    out.mkdir()
    args = [a.format(**{"in": inputs, "out": out}) for a in COMMANDS[name]]
    before = digest(inputs)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert digest(inputs) == before
    assert any(out.iterdir()), "the command wrote its output beside, not over, the input"
