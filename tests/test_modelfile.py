"""ONNX file access: load errors, summary facts, metadata, atomic and external-data saves."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from builders import conv_model, digits_linear_weights, linear_image_model, one_conv, save
from click.testing import CliRunner
from onnx import TensorProto, helper

from qtool.cli import main
from qtool.errors import QtoolError
from qtool.modelfile.load import load_model, sha256_file
from qtool.modelfile.metadata import qtool_metadata, set_metadata
from qtool.modelfile.save import save_model
from qtool.modelfile.summary import summarize
from qtool.outputs import atomic_write, check_output_path


def test_summary_matches_independent_counts(tmp_path):
    path = save(conv_model(), tmp_path / "conv.onnx")
    s = summarize(path)
    assert s.parameters == 4 * 9 + 4 + 256 * 10 + 10
    # conv: 2 * (4*8*8 outputs) * (1*3*3) ; gemm: 2 * 10 outputs * 256 inputs
    assert s.flops == 2 * 256 * 9 + 2 * 10 * 256
    assert s.op_histogram == {"Conv": 1, "Relu": 1, "Flatten": 1, "Gemm": 1}
    assert s.quantization == "none"
    assert s.file_bytes == os.path.getsize(path)
    assert [(i.name, i.dtype, i.shape) for i in s.inputs] == [("x", "float", ["N", 1, 8, 8])]
    roles = {i.name: i.role for i in s.initializers}
    assert roles == {"wc": "weight", "bc": "bias", "wf": "weight", "bf": "bias"}
    assert {i.name: i.bytes for i in s.initializers}["wf"] == 256 * 10 * 4
    assert s.opset == 17


def test_quantisation_kind_detected(tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    src = save(conv_model(), tmp_path / "conv.onnx")

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.items = iter([{"x": rng.random((4, 1, 8, 8), dtype=np.float32)}] * 4)

        def get_next(self):
            return next(self.items, None)

    for fmt, kind in ((QuantFormat.QDQ, "QDQ"), (QuantFormat.QOperator, "QOperator")):
        out = tmp_path / f"{kind}.onnx"
        quantize_static(str(src), str(out), Reader(), quant_format=fmt)
        s = summarize(out)
        assert s.quantization == kind
        if kind == "QDQ":
            weight = {i.name: i for i in s.initializers if i.role == "weight"}
            assert weight and all(i.dtype == "int8" for i in weight.values())
            assert s.flops == 2 * 256 * 9 + 2 * 10 * 256


def test_metadata_roundtrip(tmp_path):
    w, b = digits_linear_weights()
    model = linear_image_model(w, b)
    set_metadata(model, {"qtool.class_names": ["a", "b"], "qtool.model": "lin", "other": "x"})
    path = save(model, tmp_path / "m.onnx")
    meta = qtool_metadata(load_model(path))
    assert meta["class_names"] == ["a", "b"] and meta["model"] == "lin"
    assert "other" not in meta


def test_external_data_save_and_load(tmp_path):
    model = conv_model()
    out = save_model(model, tmp_path / "ext.onnx", external=True)
    assert (tmp_path / "ext.onnx.data").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext.onnx", "ext.onnx.data"]
    loaded = load_model(out)
    ref = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    got = {t.name: onnx.numpy_helper.to_array(t) for t in loaded.graph.initializer}
    assert all(np.array_equal(ref[k], got[k]) for k in ref)
    assert summarize(out).file_bytes > os.path.getsize(out)
    os.remove(tmp_path / "ext.onnx.data")
    with pytest.raises(QtoolError, match="external-data file ext.onnx.data .* is missing"):
        load_model(out)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"

    def explode(path):
        path.write_bytes(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(target, explode)
    assert list(tmp_path.iterdir()) == []
    atomic_write(target, b"whole")
    assert target.read_bytes() == b"whole"


def test_output_rules(tmp_path):
    existing = tmp_path / "a.onnx"
    existing.write_bytes(b"x")
    with pytest.raises(QtoolError, match="already exists") as refused:
        check_output_path(existing)
    assert str(refused.value).endswith("or pass `force`")  # Python callers see the name
    assert refused.value.render({"force": "--force"}.get).endswith("or pass --force")
    with pytest.raises(QtoolError, match="is the input"):
        check_output_path(existing, force=True, inputs=(existing,))
    with pytest.raises(QtoolError, match="does not exist"):
        check_output_path(tmp_path / "no" / "b.onnx")
    assert check_output_path(existing, force=True) == existing


def _checker_failure(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["undefined"], ["y"])],
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "bad_graph.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _truncated(tmp_path):
    data = conv_model().SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    return path


def _not_protobuf(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("these are my notes, not a model\n")
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.onnx", "does not exist"),
        (_not_protobuf, "is not an ONNX model"),
        (_truncated, "is not an ONNX model"),
        (_checker_failure, "fails the ONNX checker"),
    ],
)
def test_inspect_bad_models_exit_2(tmp_path, make, message):
    path = make(tmp_path)
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_inspect_json_and_input_unchanged(tmp_path):
    path = save(conv_model(), tmp_path / "conv.onnx")
    before = sha256_file(path)
    result = CliRunner().invoke(main, ["inspect", str(path), "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert "Conv" in result.output and "FLOPs" in result.output
    payload = json.loads((tmp_path / "s.json").read_text())
    assert payload["parameters"] == 2610 and payload["quantization"] == "none"
    assert sha256_file(path) == before


def test_inspect_energy_is_labelled_analytic(tmp_path):
    path = save(one_conv(), tmp_path / "conv.onnx")
    out = tmp_path / "s.json"
    result = CliRunner().invoke(main, ["inspect", str(path), "--energy", "--json", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "ANALYTIC (45 nm table, not measured)" in text and "Horowitz" in text
    assert "fp32 multiply-accumulate: multiplies" in text and "1,350 operations" in text
    energy = json.loads(out.read_text())["energy"]
    assert energy["kind"] == "analytic" and energy["fp32_macs"] == 1350
    assert energy["pj_per_inference"] == pytest.approx(49510)  # by hand: see test_runtimes_*
