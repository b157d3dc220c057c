"""The one image decoder: PNG/JPEG, grey and RGB, to float NCHW in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from qtool.data.images import decode, is_image_file, read_image, read_images, to_float_nchw
from qtool.errors import QtoolError


@pytest.fixture
def pictures(tmp_path):
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    rgb = np.zeros((3, 5, 3), np.uint8)  # 3 pixels high: must not be read as channels
    rgb[..., 2] = 200
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(tmp_path / "flat.jpg")
    return {"grey": grey, "rgb": rgb, "dir": tmp_path}


def test_png_grey_and_rgb_to_float_nchw(pictures):
    d = pictures["dir"]
    grey = read_image(d / "grey.png")
    assert grey.shape == (1, 1, 6, 8) and grey.dtype == np.float32
    assert np.allclose(grey[0, 0], pictures["grey"] / 255.0)  # lossless PNG, exact
    rgb = read_image(d / "rgb.png", channels=3)
    assert rgb.shape == (1, 3, 3, 5)
    assert np.allclose(rgb[0, 2], 200 / 255) and np.allclose(rgb[0, :2], 0.0)
    as_grey = read_image(d / "rgb.png", channels=1)  # Pillow's ITU-R 601 luma
    assert as_grey.shape == (1, 1, 3, 5) and np.allclose(as_grey, round(200 * 0.114) / 255)
    as_rgb = read_image(d / "grey.png", channels=3)
    assert np.allclose(as_rgb[0, 0], as_rgb[0, 2])


def test_jpeg_is_decoded_close_to_its_source(pictures):
    flat = read_image(pictures["dir"] / "flat.jpg", channels=3)
    assert flat.shape == (1, 3, 16, 16)
    assert np.allclose(flat, 128 / 255, atol=2 / 255) and 0.0 <= flat.min() <= flat.max() <= 1


def test_a_batch_takes_mode_and_size_from_its_first_image(pictures):
    d = pictures["dir"]
    batch = read_images([d / "rgb.png", d / "grey.png", d / "flat.jpg"])
    assert batch.shape == (3, 3, 3, 5)  # RGB, 5 wide x 3 high, like rgb.png
    assert np.allclose(batch[2], 128 / 255, atol=2 / 255)  # resized flat grey stays flat
    grey_first = read_images([d / "grey.png", d / "rgb.png"])
    assert grey_first.shape == (2, 1, 6, 8)


def test_decode_resizes_bilinearly_and_reports_unreadable_files(pictures, tmp_path):
    small = decode(pictures["dir"] / "grey.png", "L", size=(4, 3))
    assert small.shape == (3, 4) and small.dtype == np.uint8
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(QtoolError, match="cannot read image .*broken.png.*; replace it"):
        decode(broken, advice="; replace it")
    assert is_image_file(broken) and is_image_file(tmp_path / "X.JPEG")
    assert not is_image_file(tmp_path / "x.npz")


def test_array_layouts_to_float_nchw():
    hwc = np.full((2, 5, 7, 3), 255, np.uint8)
    x, kind = to_float_nchw(hwc, "a.npz")
    assert kind == "image" and x.shape == (2, 3, 5, 7) and np.allclose(x, 1.0)
    chw = np.zeros((2, 3, 5, 7), np.float32)
    assert to_float_nchw(chw, "a.npz")[0].shape == (2, 3, 5, 7)
    assert to_float_nchw(np.zeros((4, 5, 6), np.uint8), "a")[0].shape == (4, 1, 5, 6)
    table, kind = to_float_nchw(np.arange(6.0).reshape(2, 3), "t")
    assert kind == "tabular" and table.dtype == np.float32
    floats = np.full((1, 2, 2), 0.5)
    assert np.allclose(to_float_nchw(floats, "f")[0], 0.5)  # floats are not rescaled
    with pytest.raises(QtoolError, match="must be"):
        to_float_nchw(np.zeros(3), "v")


def test_uploaded_bytes_decode_like_files_and_big_images_are_refused(pictures):
    d = pictures["dir"]
    from_bytes = read_image((d / "grey.png").read_bytes(), name="upload.png")
    assert np.array_equal(from_bytes, read_image(d / "grey.png"))
    with pytest.raises(QtoolError, match="upload.png is 8x6 .* over the limit of 10") as exc:
        read_image((d / "grey.png").read_bytes(), name="upload.png", max_pixels=10)
    assert exc.value.param == "max_pixels"
    with pytest.raises(QtoolError, match="cannot read image the upload"):
        read_image(b"%PDF-1.4 not an image")


def test_dicom_bytes_are_sniffed_by_their_preamble():
    pytest.importorskip("pydicom")
    from dicom_files import example

    path = example("MR_small.dcm")
    grey = read_image(path.read_bytes())
    assert grey.shape == (1, 1, 64, 64) and np.array_equal(grey, read_image(path))
    assert read_image(path, channels=3).shape == (1, 3, 64, 64)
