"""`npz:PATH`: the MedMNIST array layout, its split rules and bad files."""

from __future__ import annotations

import numpy as np
import pytest

from qtool.data.sources import load_dataset
from qtool.errors import QtoolError


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
    assert train.spec == f"npz:{path}" and train.class_names == ["0", "1", "2"]


def test_one_split_file_serves_a_defaulted_split_but_not_an_asked_one(tmp_path):
    path = tmp_path / "only_train.npz"
    np.savez(path, train_images=np.zeros((2, 8, 8), np.uint8), train_labels=np.zeros(2))
    assert load_dataset(f"npz:{path}").split == "train"  # default test, file has only train
    with pytest.raises(QtoolError, match="split 'test' does not exist.*available train"):
        load_dataset(f"npz:{path}:test")


def test_class_names_unlabelled_and_float_images(tmp_path):
    path = tmp_path / "f.npz"
    images = np.random.default_rng(1).random((3, 4, 4)).astype(np.float32)
    np.savez(path, val_images=images, class_names=np.array(["no", "yes"]))
    val = load_dataset(f"npz:{path}:val")
    assert val.y is None and val.class_names == ["no", "yes"]
    assert np.array_equal(val.x[:, 0], images)  # floats are taken as already in [0, 1]


def test_table_in_the_npz_layout_is_tabular(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, test_images=np.ones((5, 7)), test_labels=np.arange(5))
    data = load_dataset(f"npz:{path}")
    assert data.kind == "tabular" and data.x.shape == (5, 7)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"images": np.zeros((2, 8, 8))}, "no '<split>_images' arrays"),
        ({"test_images": np.zeros((3, 4, 4)), "test_labels": np.zeros(2)}, "has 2 entries"),
        ({"test_images": np.zeros((3, 2, 4, 4, 1))}, "must be (N,H,W) or (N,H,W,C)"),
    ],
)
def test_bad_arrays_are_one_line_errors(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(QtoolError) as info:
        load_dataset(f"npz:{path}")
    assert message in str(info.value)


def test_a_file_that_is_not_an_npz(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("hello")
    with pytest.raises(QtoolError, match="not a readable .npz file"):
        load_dataset(f"npz:{path}")
    with pytest.raises(QtoolError, match="does not exist: check the path after npz:"):
        load_dataset(f"npz:{tmp_path / 'none.npz'}")
