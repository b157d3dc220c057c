"""data.dicom: the pixel pipeline on real DICOM files (pydicom's shipped examples and files
written here), checked against the DICOM formulas; multi-frame split; compressed syntaxes;
the dicom: data source with class folders and labels.csv; bad input is one QtoolError."""

from __future__ import annotations

import numpy as np
import pytest
from dicom_files import example, linear_window, write_dicom

from qtool.data.datasets import load_dataset, parse_spec
from qtool.data.dicom import dicom_frames
from qtool.data.images import read_image
from qtool.errors import QtoolError

pydicom = pytest.importorskip("pydicom")


def test_ct_rescale_then_window_matches_the_dicom_formula(tmp_path):
    """CT_small: stored int16, slope 1, intercept -1024. A soft-tissue window is applied to
    Hounsfield units, not to stored values."""
    ds = pydicom.dcmread(example("CT_small.dcm"))
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.save_as(tmp_path / "ct.dcm")
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    x = dicom_frames(tmp_path / "ct.dcm")
    assert x.shape == (1, 1, 128, 128) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], linear_window(hu, 40, 400), atol=1e-6)
    assert 0 < (x == 0).mean() < 1 and (x == 1).mean() > 0  # the window clips both ends


def test_without_a_window_each_frame_spans_zero_to_one():
    ds = pydicom.dcmread(example("CT_small.dcm"))
    hu = ds.pixel_array.astype(np.float64) - 1024
    x = dicom_frames(example("CT_small.dcm"))
    np.testing.assert_allclose(x[0, 0], (hu - hu.min()) / (hu.max() - hu.min()), atol=1e-6)


def test_mr_window_and_rle_give_the_same_pixels():
    ds = pydicom.dcmread(example("MR_small.dcm"))
    expected = linear_window(ds.pixel_array.astype(np.float64), 600, 1600)
    plain = dicom_frames(example("MR_small.dcm"))
    np.testing.assert_allclose(plain[0, 0], expected, atol=1e-6)
    assert np.array_equal(dicom_frames(example("MR_small_RLE.dcm")), plain)


def test_monochrome1_is_inverted(tmp_path):
    stored = np.arange(64, dtype=np.uint16).reshape(8, 8) * 64
    mono2 = write_dicom(tmp_path / "m2.dcm", stored, WindowCenter=2048, WindowWidth=4096)
    mono1 = write_dicom(
        tmp_path / "m1.dcm", stored, "MONOCHROME1", WindowCenter=2048, WindowWidth=4096
    )
    np.testing.assert_allclose(dicom_frames(mono1), 1.0 - dicom_frames(mono2), atol=1e-6)
    np.testing.assert_allclose(dicom_frames(mono2)[0, 0], linear_window(stored, 2048, 4096))


def test_voi_lut_sequence_is_applied(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    stored = np.arange(256, dtype=np.uint8).reshape(16, 16)
    lut = Dataset()
    lut.LUTDescriptor = [256, 0, 8]
    lut.add_new(0x00283006, "US", [255 - i for i in range(256)])  # LUTData: a LUT that inverts
    path = write_dicom(tmp_path / "lut.dcm", stored, VOILUTSequence=Sequence([lut]))
    np.testing.assert_allclose(dicom_frames(path)[0, 0], (255 - stored) / 255.0, atol=1e-6)


def test_multi_frame_files_give_one_sample_per_frame(tmp_path):
    rgb = dicom_frames(example("SC_rgb_rle_2frame.dcm"))
    raw = pydicom.dcmread(example("SC_rgb_rle_2frame.dcm")).pixel_array
    assert rgb.shape == (2, 3, 100, 100)
    np.testing.assert_allclose(rgb[1], raw[1].transpose(2, 0, 1) / 255.0, atol=1e-6)
    frames = np.stack([np.full((4, 6), v, np.uint16) for v in (0, 100, 200)])
    frames[:, 0, 0], frames[:, 0, 1] = 300, 0
    x = dicom_frames(write_dicom(tmp_path / "mf.dcm", frames))
    assert x.shape == (3, 1, 4, 6)
    np.testing.assert_allclose(x[1, 0, 1, 1], 100 / 300)  # per-frame min..max
    grey = read_image(example("SC_rgb_rle_2frame.dcm"), channels=1)
    luma = raw[0] @ np.array([0.299, 0.587, 0.114]) / 255.0
    np.testing.assert_allclose(grey[0, 0], luma, atol=1e-5)


def test_palette_colour_uses_its_lookup_table():
    from pydicom.pixels import apply_color_lut

    ds = pydicom.dcmread(example("examples_palette.dcm"))
    x = dicom_frames(example("examples_palette.dcm"))
    expected = apply_color_lut(ds.pixel_array, ds).transpose(2, 0, 1) / 65535.0
    assert x.shape == (1, 3, 350, 800)
    np.testing.assert_allclose(x[0], expected, atol=1e-6)


def test_compressed_syntax_decodes_or_names_the_package():
    """JPEG-LS: equal to the uncompressed MR when a decoder is installed, else one line naming
    the transfer syntax and the pip line (CI installs none: qtool[all] leaves pylibjpeg out)."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    path = example("MR_small_jpeg_ls_lossless.dcm")
    if get_decoder(JPEGLSLossless).is_available:
        assert np.array_equal(dicom_frames(path), dicom_frames(example("MR_small.dcm")))
        return
    with pytest.raises(QtoolError) as exc:
        dicom_frames(path)
    message = str(exc.value)
    assert "JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)" in message
    assert "pip install pylibjpeg pylibjpeg-libjpeg" in message and "\n" not in message


def test_bad_dicom_input_is_one_line(tmp_path):
    (tmp_path / "x.dcm").write_bytes(b"\0" * 200)
    with pytest.raises(QtoolError, match="not a readable DICOM"):
        dicom_frames(tmp_path / "x.dcm")
    big = write_dicom(tmp_path / "big.dcm", np.zeros((64, 64), np.uint8))
    with pytest.raises(QtoolError, match="over the limit of 1,000") as exc:
        dicom_frames(big, max_pixels=1000)
    assert exc.value.param == "max_pixels"
    with pytest.raises(QtoolError, match="no pixel data"):
        dicom_frames(example("rtplan.dcm"))


def digits_tree(root, split=None):
    """Two classes of 8-bit DICOM digits (one a 2-frame file, one a larger image)."""
    base = root / split if split else root
    (base / "zero").mkdir(parents=True)
    (base / "one").mkdir()
    a = np.zeros((8, 8), np.uint8)
    a[2:6, 2:6] = 200
    write_dicom(base / "zero" / "a.dcm", a)
    write_dicom(base / "zero" / "b", np.stack([a, a // 2]))  # no suffix: DICM preamble
    write_dicom(base / "one" / "c.dcm", np.kron(a.T, np.ones((2, 2), np.uint8)))
    return base


def test_dicom_source_class_folders(tmp_path):
    assert parse_spec(f"dicom:{tmp_path}:test").source == "dicom"
    digits_tree(tmp_path)
    ds = load_dataset(f"dicom:{tmp_path}")
    assert ds.class_names == ["one", "zero"] and ds.kind == "image"
    assert ds.x.shape == (4, 1, 16, 16)  # first file decides the size; others resized
    assert ds.y.tolist() == [0, 1, 1, 1]
    assert ds.extra["origin"][2][1] == 0 and ds.extra["origin"][3][1] == 1  # frames of b
    np.testing.assert_allclose(ds.x[1, 0, 6:10, 6:10], 1.0)


def test_dicom_source_labels_csv_by_uid_and_file(tmp_path):
    for name, uid in (("p1.dcm", "1.2.3.1"), ("p2.dcm", "1.2.3.2")):
        write_dicom(tmp_path / name, np.eye(4, dtype=np.uint8) * 9, SOPInstanceUID=uid)
    (tmp_path / "labels.csv").write_text("SOPInstanceUID,class\n1.2.3.1,tumour\n1.2.3.2,normal\n")
    ds = load_dataset(f"dicom:{tmp_path}")
    assert ds.class_names == ["normal", "tumour"] and ds.y.tolist() == [1, 0]
    (tmp_path / "labels.csv").write_text("file,class\np1.dcm,normal\n")
    with pytest.raises(QtoolError, match="have no row in labels.csv"):
        load_dataset(f"dicom:{tmp_path}")
    (tmp_path / "labels.csv").write_text("name,diagnosis\np1.dcm,normal\n")
    with pytest.raises(QtoolError, match="needs a header"):
        load_dataset(f"dicom:{tmp_path}")


def test_dicom_source_splits_and_errors(tmp_path):
    digits_tree(tmp_path, "train")
    assert len(load_dataset(f"dicom:{tmp_path}:train")) == 4
    with pytest.raises(QtoolError, match="split 'test' does not exist"):
        load_dataset(f"dicom:{tmp_path}:test")
    with pytest.raises(QtoolError, match="does not exist"):
        load_dataset(f"dicom:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(QtoolError, match="holds no DICOM files"):
        load_dataset(f"dicom:{tmp_path / 'empty'}")
