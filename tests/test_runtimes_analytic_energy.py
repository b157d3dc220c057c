"""Analytic energy checked by hand on one Conv, FP32 and INT8 (ORT's own QDQ quantisation)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from builders import one_conv, qdq_quantize

from qtool.errors import QtoolError
from qtool.runtimes.analytic_energy import HOROWITZ_45NM_PJ, analytic_energy


def test_one_fp32_conv_by_hand(tmp_path):
    path = tmp_path / "conv.onnx"
    onnx.save(one_conv(), str(path))
    e = analytic_energy(path)
    macs = (3 * 5 * 5) * (2 * 3 * 3)  # outputs x (input channels x kernel) = 1350
    weights = (3 * 2 * 3 * 3 + 3) * 4  # float32 weight and bias, read once
    activations = (2 * 5 * 5 + 3 * 5 * 5) * 4  # x read once, y written once
    assert (e.fp32_macs, e.int8_macs) == (macs, 0)
    assert (e.weight_bytes, e.activation_bytes, e.conversion_elements) == (weights, activations, 0)
    by_hand = macs * (3.7 + 0.9) + weights * 1300 / 8 + activations * 100 / 8
    assert e.pj_per_inference == pytest.approx(by_hand)  # 49,510 pJ
    assert e.mj_per_inference == pytest.approx(by_hand * 1e-9)
    assert e.kind == "analytic" and "not measured" in e.label
    assert "Horowitz" in e.source and "ISSCC 2014" in e.source
    assert HOROWITZ_45NM_PJ["8-bit int multiply"] == 0.2 and "DRAM" in e.memory_choice
    terms = {t.what: t for t in e.terms}
    assert terms["fp32 multiply-accumulate: multiplies"].pj == pytest.approx(macs * 3.7)
    assert sum(t.pj for t in e.terms) == pytest.approx(e.pj_per_inference)
    # a static batch of 4: counted per call, weights shared by the 4 inferences of a call
    four = analytic_energy(one_conv(batch=4))
    assert four.batch == 4 and four.fp32_macs == 4 * macs
    per_inference = macs * 4.6 + weights * 162.5 / 4 + activations * 12.5
    assert four.pj_per_inference == pytest.approx(per_inference)


def test_int8_conv_counts_int8_arithmetic_where_ort_fuses_it(tmp_path):
    src, q = tmp_path / "conv.onnx", tmp_path / "conv.int8.onnx"
    onnx.save(one_conv(), str(src))
    qdq_quantize(src, q, np.random.default_rng(1).random((8, 2, 5, 5), np.float32))
    e = analytic_energy(q)
    assert (e.int8_macs, e.fp32_macs) == (1350, 0)  # DQ -> Conv -> Q ran as QLinearConv
    assert e.conversion_elements == 2 * 5 * 5 + 3 * 5 * 5  # quantise x, dequantise y
    terms = {t.what: t for t in e.terms}
    assert terms["int8 multiply-accumulate: multiplies"].pj_each == 0.2
    assert terms["int8 multiply-accumulate: adds"].priced_as == "32-bit int add"  # int32 acc
    fp32 = analytic_energy(src)
    assert e.weight_bytes < fp32.weight_bytes and e.pj_per_inference < fp32.pj_per_inference


def test_a_free_input_size_is_bad_input(tmp_path):
    model = one_conv()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    with pytest.raises(QtoolError, match="free dimension 'H' besides the batch"):
        analytic_energy(model)
