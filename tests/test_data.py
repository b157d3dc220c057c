"""Data set specs: built-in splits, npz and folder layouts, and every bad-input path."""

from __future__ import annotations

import numpy as np
import pytest
from builders import digits_linear_weights, linear_image_model, save
from click.testing import CliRunner
from PIL import Image

from qtool.cli import main
from qtool.data.datasets import fit_to_input, load_dataset, normalize, parse_spec, resize_images
from qtool.errors import QtoolError


def test_builtin_splits_are_disjoint_stratified_and_deterministic():
    splits = {s: load_dataset(f"digits:{s}") for s in ("train", "val", "test")}
    sizes = {s: len(d) for s, d in splits.items()}
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == 360
    # disjoint: no image appears in two splits (digits has a few duplicates, so compare counts)
    flat = {s: {d.x[i].tobytes() for i in range(len(d))} for s, d in splits.items()}
    assert len(flat["train"] & flat["test"]) <= 2
    # stratified: every class has 10 % +- 1 of the test split
    counts = np.bincount(splits["test"].y, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38
    again = load_dataset("digits", split="test")
    assert np.array_equal(again.x, splits["test"].x) and np.array_equal(again.y, splits["test"].y)
    assert splits["test"].x.shape[1:] == (1, 8, 8) and splits["test"].x.dtype == np.float32
    assert 0.0 <= splits["test"].x.min() and splits["test"].x.max() <= 1.0


def test_breast_cancer_is_tabular_with_malignant_positive():
    data = load_dataset("breast-cancer:test")
    assert data.kind == "tabular" and data.x.shape == (114, 30)
    assert data.class_names == ["malignant", "benign"]
    assert data.extra["positive_class"] == 0


def test_npz_medmnist_layout_hwc_and_hw(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "med.npz"
    np.savez(
        path,
        train_images=rng.integers(0, 256, (6, 5, 5, 3), dtype=np.uint8),
        train_labels=np.array([[0], [1], [2], [0], [1], [2]]),
        test_images=rng.integers(0, 256, (4, 5, 5), dtype=np.uint8),
        test_labels=np.array([1, 0, 1, 0]),
    )
    train = load_dataset(f"npz:{path}:train")
    assert train.x.shape == (6, 3, 5, 5) and train.y.tolist() == [0, 1, 2, 0, 1, 2]
    raw = np.load(path)["train_images"]
    assert np.allclose(train.x[2, 1], raw[2, :, :, 1] / 255.0)
    test = load_dataset(f"npz:{path}")
    assert test.split == "test" and test.x.shape == (4, 1, 5, 5)


def test_folder_of_pngs(tmp_path):
    for label in ("benign", "malignant"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(np.full((6, 6), 40 * i, np.uint8)).save(tmp_path / label / f"{i}.png")
    data = load_dataset(f"folder:{tmp_path}")
    assert data.class_names == ["benign", "malignant"]
    assert data.x.shape == (6, 1, 6, 6) and data.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.isclose(data.x[1].max(), 40 / 255)


def test_fit_to_input_resizes_converts_channels_and_flattens():
    x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    assert fit_to_input(x, ["N", 3, 16, 16]).shape == (2, 3, 16, 16)
    assert fit_to_input(x, ["N", 64]).shape == (2, 64)
    constant = np.ones((1, 1, 4, 4), np.float32)
    assert np.allclose(resize_images(constant, 7, 9), 1.0)
    with pytest.raises(QtoolError, match="features"):
        fit_to_input(x, ["N", 30])
    norm = normalize(np.ones((2, 3), np.float32), [1, 2, 3], [1, 2, 4])
    assert np.allclose(norm, [[0, -0.5, -0.5]] * 2)


def test_spec_parsing_keeps_colons_in_paths():
    spec = parse_spec("npz:/data/a:b.npz:val")
    assert spec.source == "npz" and str(spec.path) == "/data/a:b.npz" and spec.split == "val"


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


def test_error_lines_print_brackets_verbatim(digits_model):
    """Advice like pip install 'qtool[data]' must not be eaten as rich markup."""
    result = CliRunner().invoke(main, ["eval", str(digits_model), "--data", "scans[data]"])
    assert result.exit_code == 2
    assert "'scans[data]'" in result.output and result.output.startswith("error: ")
