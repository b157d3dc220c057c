"""Calibration samples: memory-sized batches, ORT's reader protocol, labelled splits, bad data."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from builders import linear_image_model
from onnxruntime.quantization import CalibrationDataReader

from qtool.data.sources import load_dataset
from qtool.errors import QtoolError
from qtool.evaluation.model_io import model_io
from qtool.quantization.calibration import (
    CALIB_BATCH,
    Calibration,
    batches,
    calibration_batch,
    debug_subset,
    labelled_split,
    prepare,
    reader,
)


def test_batches_split_and_a_static_batch_wraps_to_full_batches():
    x = np.arange(10).reshape(10, 1)
    assert [len(b) for b in batches(x, 4, None)] == [4, 4, 2]
    full = batches(x, 32, 4)  # static batch 4: 12 rows, the last two wrap to the start
    assert [len(b) for b in full] == [4, 4, 4]
    assert np.concatenate(full)[:, 0].tolist() == [*range(10), 0, 1]


def test_reader_streams_input_dicts_then_none(tmp_path):
    parts = [np.zeros((2, 3)), np.ones((1, 3))]
    feed = reader("x", parts)
    assert isinstance(feed, CalibrationDataReader) and len(feed) == 2
    first, second = feed.get_next(), feed.get_next()
    assert list(first) == ["x"] and first["x"] is parts[0] and second["x"] is parts[1]
    assert feed.get_next() is None
    calibration = Calibration("x", parts, tmp_path / "cache.json")
    again = calibration.reader()  # a fresh reader per quantisation
    assert again.get_next()["x"] is parts[0]


def test_debug_subset_is_seeded_and_in_order():
    x = np.arange(100).reshape(100, 1)
    part = debug_subset(x, 8, seed=3)
    assert len(part) == 8 and part[:, 0].tolist() == sorted(part[:, 0].tolist())
    assert np.array_equal(part, debug_subset(x, 8, seed=3))
    assert len(debug_subset(x[:5], 8, seed=3)) == 5


def test_labelled_splits_are_asked_for_else_calib_split_else_metadata(tmp_path):
    data, note = labelled_split("breast-cancer:val", "digits", {}, "test", "test_data")
    assert (data.spec, data.split, note) == ("breast-cancer", "val", None)  # its own suffix
    data, _ = labelled_split("breast-cancer", "digits", {}, "val", "val_data")
    assert (data.spec, data.split) == ("breast-cancer", "val")  # else the role's split
    data, _ = labelled_split(None, "digits:train", {}, "test", "test_data")
    assert (data.spec, data.split) == ("digits", "test")  # the calib spec's split
    data, _ = labelled_split(None, "digits:train", {}, "val", "val_data")
    assert (data.spec, data.split) == ("digits", "val")
    unlabelled = tmp_path / "u.npz"
    np.savez(unlabelled, test_images=np.zeros((2, 8, 8), np.uint8))
    data, _ = labelled_split(None, f"npz:{unlabelled}", {"dataset": "breast-cancer"}, "test", "t")
    assert data.spec == "breast-cancer"  # calib has no labels: the model's own data set
    data, note = labelled_split(None, f"npz:{unlabelled}", {}, "test", "test_data")
    assert data is None and "no labels" in note
    data, note = labelled_split(None, f"npz:{unlabelled}", {}, "val", "val_data")
    assert data is None and "split 'val' does not exist" in note  # never the test split
    with pytest.raises(QtoolError, match="no labels to score") as info:
        labelled_split(f"npz:{unlabelled}", "digits", {}, "val", "val_data")
    assert info.value.param == "val_data"


def test_calibration_batch_fits_the_activation_memory():
    model = linear_image_model(np.zeros((64, 10), np.float32), np.zeros(10, np.float32))
    per_sample = 2 * (64 + 10) * 4  # two copies of flat and logits, float32
    assert calibration_batch(model, 10 * per_sample) == 10
    assert calibration_batch(model, 1) == 1  # never less than one sample
    assert calibration_batch(model, 1 << 30) == CALIB_BATCH  # never more than the default


def test_data_that_cannot_feed_the_input_is_bad_input_naming_the_param(tmp_path):
    w = np.zeros((64, 10), np.float32)
    session = ort.InferenceSession(
        linear_image_model(w, np.zeros(10, np.float32)).SerializeToString(),
        providers=["CPUExecutionProvider"],
    )
    io = model_io(session)
    digits = load_dataset("digits:train").take(5)
    x = prepare(io, digits, "calibration data", session, tmp_path / "m.onnx", param="calib")
    assert x.shape == (5, 1, 8, 8) and x.dtype == np.float32
    table = load_dataset("breast-cancer:train")
    with pytest.raises(QtoolError, match="calibration data breast-cancer .* cannot feed") as info:
        prepare(io, table, "calibration data", session, tmp_path / "m.onnx", param="calib")
    assert info.value.param == "calib" and "--" not in str(info.value)
