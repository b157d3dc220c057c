"""modelfile.validate: a model is accepted only if every text field is UTF-8, every
initializer is sound, the ONNX checker passes and ONNX Runtime loads it; and
modelfile.metadata: qtool's keys of the wrong type are refused where they are read."""

from __future__ import annotations

import mutants
import numpy as np
import onnx
import pytest
from builders import digits_linear_weights, linear_image_model, save

from qtool.errors import QtoolError
from qtool.modelfile.load import load_model, parse_model
from qtool.modelfile.locate import locate_initializers
from qtool.modelfile.metadata import qtool_metadata, set_metadata
from qtool.modelfile.validate import check_model, check_runtime, check_tensors, check_text


@pytest.fixture(scope="module")
def clean() -> bytes:
    model = linear_image_model(*digits_linear_weights())
    model.graph.node[0].name = "flatten"
    return model.SerializeToString()


def test_a_clean_model_passes_every_check(clean, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(clean)
    model = parse_model(clean, path)
    locations = check_model(model, clean, path, path)
    assert [loc.name for loc in locations] == ["w", "b"]
    check_runtime(path, path)
    assert load_model(path).graph.node[1].op_type == "Gemm"


@pytest.mark.parametrize("make", [mutants.non_utf8_node_name, mutants.non_utf8_metadata_key,
                                  mutants.non_utf8_metadata_value])  # fmt: skip
def test_invalid_utf8_text_is_named(clean, make):
    bad = make(clean)
    with pytest.raises(QtoolError, match="is not valid UTF-8 text"):
        check_text(parse_model(bad, "m.onnx"), "m.onnx")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: setattr(t, "data_type", 99), "data type 99, which ONNX does not define"),
        (lambda t: t.dims.__setitem__(0, -3), "negative dimension"),
        (lambda t: setattr(t, "raw_data", t.raw_data[:-4]), "stores 2556 bytes"),
    ],
)
def test_unsound_initializers(clean, edit, message):
    model = onnx.load_model_from_string(clean)
    edit(model.graph.initializer[0])
    data = model.SerializeToString()
    with pytest.raises(QtoolError, match=message):
        check_tensors(locate_initializers(data), "m.onnx")


@pytest.mark.parametrize("name", sorted(mutants.EXTERNAL_REPRODUCERS))
def test_external_data_offsets_and_lengths_are_checked_against_the_file(clean, tmp_path, name):
    path = tmp_path / "m.onnx"
    path.write_bytes(mutants.REPRODUCERS[name](clean))
    (tmp_path / "w.bin").write_bytes(mutants.external_payload(clean))
    with pytest.raises(QtoolError) as caught:
        load_model(path)
    assert "Traceback" not in str(caught.value) and str(path) in str(caught.value)


def test_a_model_onnx_runtime_cannot_load(tmp_path):
    model = linear_image_model(*digits_linear_weights())
    model.graph.node[1].op_type = "NoSuchOp"
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(QtoolError, match="fails the ONNX checker|ONNX Runtime can load"):
        load_model(path)
    model.graph.node[1].op_type = "Gemm"
    model.graph.initializer[0].dims[0] = 63  # the checker passes; ORT's shape check does not
    model.graph.initializer[0].raw_data = model.graph.initializer[0].raw_data[: 63 * 10 * 4]
    save(model, path)
    with pytest.raises(QtoolError, match="not a model ONNX Runtime can load"):
        load_model(path)
    assert load_model(path, runtime=False) is not None


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("normalization", "3", "is not {"),
        ("normalization", '{"mean": ["a"], "std": [1]}', "has a mean that is not a list of finite"),
        ("normalization", '{"mean": [0], "std": [0]}', "has a std that is not positive"),
        (
            "normalization",
            '{"mean": [0, 1], "std": [1, 1, 1]}',
            "has mean and std of different lengths",
        ),
        ("class_names", "7", "is not a list of strings"),
        ("class_names", '["a", 3]', "is not a list of strings"),
        ("input_shape", '"big"', "is not a list of dimensions"),
        ("input_shape", "[1, -3]", "is not a list of dimensions"),
        ("dynamic_batch", '"yes"', "is not true or false"),
        ("dataset", '{"a": 1}', "is not a string"),
    ],
)
def test_qtool_metadata_of_the_wrong_type_is_refused(key, value, message):
    model = linear_image_model(np.eye(64, 10, dtype=np.float32), np.zeros(10, np.float32))
    set_metadata(model, {f"qtool.{key}": value})
    with pytest.raises(QtoolError, match=f"qtool.{key} that {message}"):
        qtool_metadata(model, "m.onnx")


def test_good_metadata_and_numeric_names_read_back():
    model = linear_image_model(np.eye(64, 10, dtype=np.float32), np.zeros(10, np.float32))
    set_metadata(model, {"qtool.model": "7", "qtool.normalization": {"mean": [0.5], "std": [2]}})
    meta = qtool_metadata(model)
    assert meta["model"] == "7" and meta["normalization"] == {"mean": [0.5], "std": [2]}


def test_positive_class_is_text_and_one_of_the_class_names():
    model = linear_image_model(np.eye(64, 2, dtype=np.float32), np.zeros(2, np.float32))
    set_metadata(model, {"qtool.class_names": ["0", "1"], "qtool.positive_class": "1"})
    assert qtool_metadata(model)["positive_class"] == "1"  # not the number 1
    set_metadata(model, {"qtool.positive_class": "2"})
    with pytest.raises(QtoolError, match="positive_class '2', which is not one of its class_n"):
        qtool_metadata(model, "m.onnx")
