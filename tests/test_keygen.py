"""keygen, package --sign and verify --trust from the shell: exit codes and the one line each
refusal prints."""

from __future__ import annotations

import json
import stat

import pytest
from builders import digits_linear_weights, linear_image_model, save
from click.testing import CliRunner

from qtool.cli import main

pytest.importorskip("cryptography")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def setup(tmp_path):
    w, b = digits_linear_weights()
    model = save(linear_image_model(w, b), tmp_path / "lin.onnx")
    for name in ("release", "other"):
        result = run("keygen", "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
    return tmp_path, model


def test_keygen_package_sign_verify_trust(setup):
    tmp, model = setup
    assert stat.S_IMODE((tmp / "release").stat().st_mode) == 0o600
    assert run("keygen", "--out", tmp / "release").exit_code == 2  # exists, no --force
    packaged = run("package", model, "--out", tmp / "b", "--sign", tmp / "release")
    assert packaged.exit_code == 0, packaged.output
    key_id = json.loads((tmp / "b" / "manifest.sig").read_text())["key_id"]
    assert key_id in packaged.output
    plain = run("verify", tmp / "b")
    assert plain.exit_code == 0 and "signer unverified" in plain.output
    trusted = run("verify", tmp / "b", "--trust", f"{tmp / 'other.pub'},{tmp / 'release.pub'}")
    assert trusted.exit_code == 0 and "signed by trusted key" in trusted.output


def test_every_refusal_is_one_line_and_exit_1(setup):
    tmp, model = setup
    assert run("package", model, "--out", tmp / "b", "--sign", tmp / "release").exit_code == 0
    assert run("package", model, "--out", tmp / "u").exit_code == 0
    cases = {
        "unsigned": (tmp / "u", tmp / "release.pub"),
        "untrusted key": (tmp / "b", tmp / "other.pub"),
    }
    for reason, (bundle, pub) in cases.items():
        result = run("verify", bundle, "--trust", pub)
        assert result.exit_code == 1, result.output
        assert result.output.strip().count("\n") == 0
        assert f"signature check failed ({reason})" in result.output
    manifest = tmp / "b" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"format_version": 1', '"format_version":1'))
    result = run("verify", tmp / "b", "--trust", tmp / "release.pub")
    assert result.exit_code == 1 and "(manifest changed after signing)" in result.output


def test_bad_key_arguments_are_exit_2(setup):
    tmp, model = setup
    result = run("package", model, "--out", tmp / "b", "--sign", tmp / "release.pub")
    assert result.exit_code == 2 and "--sign: " in result.output and "public key" in result.output
    assert not (tmp / "b").exists()
    assert run("package", model, "--out", tmp / "b").exit_code == 0
    result = run("verify", tmp / "b", "--trust", tmp / "release")
    assert result.exit_code == 2 and "--trust: " in result.output
