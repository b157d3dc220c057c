"""The files `qtool predict` is given (images, DICOM, .npz) -> one batch with each row's
origin."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from qtool.data.inputs import load_inputs, npz_samples
from qtool.errors import QtoolError


def test_images_and_npz_make_one_fitted_batch(tmp_path):
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(tmp_path / "a.png")
    np.savez(tmp_path / "s.npz", x=np.zeros((3, 8, 8), np.uint8))
    paths = [tmp_path / "a.png", tmp_path / "s.npz"]
    x, origin = load_inputs(paths, ["N", 1, 8, 8])
    assert x.shape == (4, 1, 8, 8) and x.dtype == np.float32
    assert np.allclose(x[0], 1.0) and np.allclose(x[1:], 0.0)
    assert origin == [
        (str(paths[0]), 0),
        (f"{paths[1]}:x", 0),
        (f"{paths[1]}:x", 1),
        (f"{paths[1]}:x", 2),
    ]
    rgb, _ = load_inputs([tmp_path / "a.png"], ["N", 3, 4, 4])  # grey read as RGB
    assert rgb.shape == (1, 3, 4, 4)
    flat, _ = load_inputs([tmp_path / "s.npz"], ["N", 64])
    assert flat.shape == (3, 64)


def test_npz_sample_array_is_found_by_name_or_alone(tmp_path):
    np.savez(tmp_path / "named.npz", other=np.ones(2), images=np.full((2, 4, 4), 255, np.uint8))
    assert np.allclose(npz_samples(tmp_path / "named.npz"), 1.0)
    np.savez(tmp_path / "alone.npz", whatever=np.zeros((1, 4, 4), np.float32))
    assert npz_samples(tmp_path / "alone.npz").shape == (1, 1, 4, 4)
    medmnist = {f"{s}_images": np.zeros((i + 1, 4, 4), np.uint8) for i, s in enumerate("abc")}
    np.savez(
        tmp_path / "m.npz", train_images=medmnist["a_images"], test_images=medmnist["c_images"]
    )
    x, origin = load_inputs([tmp_path / "m.npz"], ["N", 1, 4, 4])
    assert len(x) == 3 and origin[0] == (f"{tmp_path / 'm.npz'}:test_images", 0)
    np.savez(tmp_path / "two.npz", a=np.zeros(2), b=np.zeros(2))
    with pytest.raises(QtoolError, match="name the samples array 'images' or 'x'"):
        npz_samples(tmp_path / "two.npz")


def test_bad_inputs(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(QtoolError, match="neither an image"):
        load_inputs([tmp_path / "notes.txt"], ["N", 1, 8, 8])
    with pytest.raises(QtoolError, match="does not exist"):
        load_inputs([tmp_path / "missing.png"], ["N", 1, 8, 8])
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / "six.png")
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(tmp_path / "nine.png")
    with pytest.raises(QtoolError, match="different sizes"):  # the model fixes no size
        load_inputs([tmp_path / "six.png", tmp_path / "nine.png"], ["N", 1, "H", "W"])
    x, _ = load_inputs([tmp_path / "six.png", tmp_path / "nine.png"], ["N", 1, 8, 8])
    assert x.shape == (2, 1, 8, 8)


def test_dicom_frames_are_rows_and_match_the_png_of_the_same_pixels(tmp_path):
    pytest.importorskip("pydicom")
    from dicom_files import write_dicom

    pixels = (np.arange(64, dtype=np.uint8) * 4).reshape(8, 8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    # window 128/256 maps stored 0..255 onto exactly v / 255, as a PNG reads
    write_dicom(tmp_path / "a.dcm", np.stack([pixels, pixels.T]), WindowCenter=128, WindowWidth=256)
    x, origin = load_inputs([tmp_path / "a.png", tmp_path / "a.dcm"], ["N", 1, 8, 8])
    assert x.shape == (3, 1, 8, 8)
    assert origin[1:] == [(str(tmp_path / "a.dcm"), 0), (str(tmp_path / "a.dcm"), 1)]
    np.testing.assert_allclose(x[1], x[0], atol=1e-6)
    np.testing.assert_allclose(x[2, 0], x[0, 0].T, atol=1e-6)
    with pytest.raises(QtoolError, match="over the limit"):
        load_inputs([tmp_path / "a.dcm"], ["N", 1, 8, 8], max_pixels=100)
