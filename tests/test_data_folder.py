"""`folder:PATH`: class sub-folders of images, with or without train/val/test."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from qtool.data.sources import load_dataset
from qtool.errors import QtoolError


def test_folder_of_pngs(tmp_path):
    for label in ("benign", "malignant"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(np.full((6, 6), 40 * i, np.uint8)).save(tmp_path / label / f"{i}.png")
    data = load_dataset(f"folder:{tmp_path}")
    assert data.class_names == ["benign", "malignant"]
    assert data.x.shape == (6, 1, 6, 6) and data.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.isclose(data.x[1].max(), 40 / 255)
    assert data.split == "all"


def test_split_sub_folders_and_mixed_images(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 255
    for split in ("train", "test"):
        for label in ("a", "b"):
            (tmp_path / split / label).mkdir(parents=True)
    Image.fromarray(rgb).save(tmp_path / "train" / "a" / "0.png")  # first: RGB, 6x4
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "train" / "b" / "0.jpg")
    (tmp_path / "train" / "b" / "notes.txt").write_text("not an image")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "test" / "a" / "0.png")
    train = load_dataset(f"folder:{tmp_path}:train")
    assert train.x.shape == (2, 3, 4, 6)  # the first image sets RGB and its size
    assert np.allclose(train.x[0, 0], 1.0) and np.allclose(train.x[0, 1:], 0.0)
    assert np.allclose(train.x[1], 1.0, atol=0.02)  # white grey JPEG -> white RGB
    test = load_dataset(f"folder:{tmp_path}")
    assert test.split == "test" and test.x.shape == (1, 1, 5, 5) and test.y.tolist() == [0]
    with pytest.raises(QtoolError, match="split 'val' does not exist.*available train, test"):
        load_dataset(f"folder:{tmp_path}:val")


def test_folder_errors(tmp_path):
    (tmp_path / "flat" / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "flat" / "a" / "0.png")
    with pytest.raises(QtoolError, match="no train/val/test sub-folders.*drop the :split"):
        load_dataset(f"folder:{tmp_path / 'flat'}:test")
    with pytest.raises(QtoolError, match="does not exist: check the path after folder:"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(QtoolError, match="holds no images"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
