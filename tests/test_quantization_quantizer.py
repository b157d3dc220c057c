"""The calls into ONNX Runtime's quantiser: op types, node names, pre-processing, one run."""

from __future__ import annotations

import onnx
import pytest
from builders import conv_model, save
from onnx import TensorProto

from qtool.data.sources import load_dataset
from qtool.errors import QtoolError, WorkFailed
from qtool.quantization import quantizer
from qtool.quantization.calibration import Calibration, batches
from qtool.quantization.quantizer import (
    Job,
    check_nodes_exist,
    name_nodes,
    op_types_to_quantize,
    preprocess,
    quantize_once,
)
from qtool.quantization.settings import QuantSettings


def test_op_types_are_orts_minus_the_excluded():
    every = op_types_to_quantize([])
    assert {"Conv", "Gemm", "MatMul"} <= set(every) and every == sorted(every)
    assert "Conv" not in op_types_to_quantize(["Conv"])
    with pytest.raises(QtoolError, match="Banana is not an op type") as info:
        op_types_to_quantize(["Banana"])
    assert info.value.param == "exclude_op_types"


def test_unnamed_nodes_get_stable_unique_names(tmp_path):
    model = conv_model()
    model.graph.node[2].name = "Relu_1"  # the Flatten already holds the Relu's default name
    path = save(model, tmp_path / "m.onnx")
    named = name_nodes(path)
    names = [n.name for n in named.graph.node]
    assert names == ["Conv_0", "Relu_1_", "Relu_1", "Gemm_3"]
    assert [n.name for n in onnx.load(str(path)).graph.node] == names  # saved back
    check_nodes_exist(named, ["Conv_0", "Gemm_3"])
    with pytest.raises(QtoolError, match="no node named nope .*its nodes are: Conv_0") as info:
        check_nodes_exist(named, ["nope"])
    assert info.value.param == "exclude_nodes"


@pytest.mark.parametrize("child", [False, True], ids=["in-process", "child-process"])
def test_preprocess_copies_the_model_when_ort_cannot_prepare_it(tmp_path, monkeypatch, child):
    if child:  # what a model of 16 MB or more gets
        monkeypatch.setattr(quantizer, "CHILD_PROCESS_BYTES", 0)
    src = save(conv_model(), tmp_path / "m.onnx")
    ok, why = preprocess(src, tmp_path / "pre.onnx")
    assert ok is True and why is None and onnx.load(str(tmp_path / "pre.onnx")).graph.node
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    ok, why = preprocess(bad, tmp_path / "pre_bad.onnx")
    assert ok is False and why.startswith("pre-processing failed")
    assert (tmp_path / "pre_bad.onnx").read_bytes() == b"not a model"


def _job(tmp_path, fmt: str = "qdq") -> Job:
    pre = tmp_path / "pre.onnx"
    preprocess(save(conv_model(), tmp_path / "m.onnx"), pre)
    name_nodes(pre)
    x = load_dataset("digits:train").take(64).x
    calibration = Calibration("x", batches(x, 32, None), tmp_path / "calibration.json")
    settings = QuantSettings(
        "minmax", fmt, True, "uint8", "int8", False, "test", [], [], [], "digits", "train", 64,
        0, True,
    )  # fmt: skip
    return Job(pre, calibration, settings, op_types_to_quantize([]))


def _weight_types(path) -> dict[str, int]:
    model = onnx.load(str(path))
    return {t.name: t.data_type for t in model.graph.initializer}


def test_one_run_quantises_weights_and_caches_the_calibration(tmp_path):
    job = _job(tmp_path)
    out = tmp_path / "q.onnx"
    quantize_once(job, out, [], "qdq")
    types = _weight_types(out)
    assert types["wc_quantized"] == TensorProto.INT8 and types["wf_quantized"] == TensorProto.INT8
    cache = job.calibration.cache
    assert cache.is_file() and "r" in cache.read_text()  # activation ranges, by tensor
    stamp = cache.stat().st_mtime_ns
    kept = tmp_path / "kept.onnx"
    quantize_once(job, kept, ["Conv_0"], "qdq")  # same ranges, the Conv stays FP32
    assert cache.stat().st_mtime_ns == stamp
    conv = next(n for n in onnx.load(str(kept)).graph.node if n.op_type == "Conv")
    assert _weight_types(kept)[conv.input[1]] == TensorProto.FLOAT
    qop = tmp_path / "qop.onnx"
    quantize_once(job, qop, [], "qoperator")
    assert "QLinearConv" in {n.op_type for n in onnx.load(str(qop)).graph.node}


def test_ort_failures_are_work_failures_without_flags(tmp_path):
    job = _job(tmp_path)
    job.pre_path.write_bytes(b"broken")
    with pytest.raises(WorkFailed, match="ONNX Runtime could not quantise the model") as info:
        quantize_once(job, tmp_path / "q.onnx", [], "qdq")
    assert "--" not in str(info.value)
