"""Data set specs through the CLI: every bad-input path is exit 2 with one clear line.

The sources themselves are tested per module (tests/test_data_<module>.py)."""

from __future__ import annotations

import numpy as np
import pytest
from builders import digits_linear_weights, linear_image_model, save
from click.testing import CliRunner

from qtool.cli import main


@pytest.fixture
def digits_model(tmp_path):
    w, b = digits_linear_weights()
    return save(linear_image_model(w, b), tmp_path / "lin.onnx")


def _bad_npz(tmp_path):
    path = tmp_path / "wrong.npz"
    np.savez(path, images=np.zeros((2, 8, 8), np.uint8))
    return f"npz:{path}"


def _empty_folder(tmp_path):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    return f"folder:{tmp_path / 'empty'}"


def _unreadable_image(tmp_path):
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "a" / "broken.png").write_bytes(b"not a png at all")
    return f"folder:{tmp_path / 'imgs'}"


def _missing_split(tmp_path):
    path = tmp_path / "only_train.npz"
    np.savez(path, train_images=np.zeros((2, 8, 8), np.uint8), train_labels=np.zeros(2))
    return f"npz:{path}:test"


@pytest.mark.parametrize(
    ("make_spec", "message"),
    [
        (lambda p: "mnist-fashion", "unknown data set spec"),
        (lambda p: f"npz:{p / 'nope.npz'}", "does not exist"),
        (_bad_npz, "no '<split>_images' arrays"),
        (_empty_folder, "holds no images"),
        (_unreadable_image, "cannot read image"),
        (_missing_split, "split 'test' does not exist"),
    ],
)
def test_bad_data_specs_exit_2_with_one_clear_line(tmp_path, digits_model, make_spec, message):
    spec = make_spec(tmp_path)
    result = CliRunner().invoke(main, ["eval", str(digits_model), "--data", spec])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.count("error:") == 1
    assert result.output.startswith("error: --data: "), "the error names the flag it came from"


def test_error_lines_print_brackets_verbatim(digits_model):
    """Advice like pip install 'qtool[data]' must not be eaten as rich markup."""
    result = CliRunner().invoke(main, ["eval", str(digits_model), "--data", "scans[data]"])
    assert result.exit_code == 2
    assert "'scans[data]'" in result.output and result.output.startswith("error: ")
