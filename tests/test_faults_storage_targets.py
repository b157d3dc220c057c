"""Eligible tensors by graph role (never by name), layer regex, varint conversion."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from flip_models import digits_cnn, digits_mlp, quantized, typed_fields

from qtool.errors import QtoolError
from qtool.faults.storage.selection import Selection
from qtool.faults.storage.targets import prepare_bytes, select_targets
from qtool.modelfile.buffers import read_model_files


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("targets")
    cnn = digits_cnn(d / "cnn.onnx", channels=4)
    return {
        "mlp": digits_mlp(d / "mlp.onnx", hidden=16),
        "qdq": quantized(cnn, d / "cnn.qdq.onnx", "qdq"),
        "typed": typed_fields(d / "typed.onnx"),
    }


def _names(path: Path, **kwargs) -> dict[str, str]:
    return {t.loc.name: t.role for t in select_targets(path.read_bytes(), Selection(**kwargs))}


def test_roles_of_a_float_model(models):
    assert _names(models["mlp"]) == {"fc1.weight": "weight", "fc2.weight": "weight"}
    assert _names(models["mlp"], targets=("biases",)) == {"fc1.bias": "bias", "fc2.bias": "bias"}


def test_roles_of_a_qdq_model_follow_the_dequantize_edges(models):
    weights = _names(models["qdq"])
    assert set(weights) == {"conv.weight_quantized", "fc.weight_quantized"}
    qparams = _names(models["qdq"], targets=("qparams",))
    assert qparams and all("scale" in n or "zero_point" in n for n in qparams)
    everything = _names(models["qdq"], targets=("all",))
    assert set(weights) | set(qparams) <= set(everything)


def test_renamed_tensors_keep_their_roles(tmp_path, models):
    """Roles come from the graph: renaming every initializer changes nothing."""
    model = onnx.load(str(models["mlp"]))
    renames = {t.name: f"t{i}" for i, t in enumerate(model.graph.initializer)}
    for t in model.graph.initializer:
        t.name = renames[t.name]
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
    path = tmp_path / "renamed.onnx"
    onnx.save(model, str(path))
    assert _names(path) == {renames["fc1.weight"]: "weight", renames["fc2.weight"]: "weight"}


def test_positions_and_layers(models):
    targets = select_targets(models["mlp"].read_bytes(), Selection(positions=("exponent",)))
    assert all(t.positions == tuple(range(23, 31)) and t.word == 4 for t in targets)
    assert _names(models["mlp"], layers="^fc2$") == {"fc2.weight": "weight"}  # a node name
    with pytest.raises(QtoolError, match="matches none of the 2 weights tensors") as caught:
        _names(models["mlp"], layers="conv")
    assert caught.value.param == "layers"


def test_only_selected_varint_tensors_are_converted(models):
    files = read_model_files(models["typed"])
    before = bytes(files.main)
    selection = Selection(layers="int8")
    targets = select_targets(files.main, selection)
    assert [t.loc.name for t in targets] == ["w_int8"] and not targets[0].loc.flippable
    targets, converted, originals = prepare_bytes(files, targets, selection.positions)
    assert converted == ["w_int8"] and list(originals) == [("main", "w_int8")]
    assert targets[0].loc.flippable and targets[0].loc.encoding == "raw_data"
    assert bytes(files.main) != before
    untouched = select_targets(files.main, Selection(targets=("qparams",)))
    assert {t.loc.name: t.loc.flippable for t in untouched}["q_zero"] is False
