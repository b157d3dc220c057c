"""exporters.parity: an export that computes what torch computes passes; one that differs
(changed weights, another output size) fails with the difference measured; batches are cut
as the model's batch dimension requires."""

from __future__ import annotations

import numpy as np
import pytest

from qtool.errors import QtoolError

torch = pytest.importorskip("torch")

from qtool.exporters.parity import check_parity  # noqa: E402
from qtool.exporters.pytorch import export_onnx  # noqa: E402


def linear(seed: int = 0, out: int = 4):
    torch.manual_seed(seed)
    return torch.nn.Linear(6, out)


def samples(n: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 6)).astype(np.float32)


@pytest.fixture(scope="module")
def exported():
    module = linear()
    static = export_onnx(module, (5, 6), exporter="torchscript", dynamic_batch=False)
    dynamic = export_onnx(module, (1, 6), exporter="torchscript")
    return module, dynamic.SerializeToString(), static.SerializeToString()


def test_same_computation_passes_in_batches_of_1_and_32(exported):
    module, dynamic, _ = exported
    result = check_parity(module, dynamic, samples(70), source="test rows")
    assert result.passed and result.samples == 70 and result.batches == [1, 6, 32]
    assert result.max_abs_diff < 1e-5 and result.top1_agreement == 1.0
    assert result.source == "test rows" and "top-1 agreement 100.00 %" in result.summary()


def test_static_batch_uses_whole_batches_only(exported):
    module, _, static = exported
    result = check_parity(module, static, samples(23), static_batch=5)
    assert result.passed and result.samples == 20 and result.batches == [5]
    with pytest.raises(QtoolError, match="no samples"):
        check_parity(module, static, samples(4), static_batch=5)


def test_a_different_computation_fails_with_its_difference(exported):
    module, dynamic, _ = exported
    changed = linear()
    with torch.no_grad():
        changed.weight[0, 0] += 0.5
    x = samples(40)
    result = check_parity(changed, dynamic, x)
    expected = np.abs(x[:, 0] * 0.5).max()
    assert not result.passed
    assert result.max_abs_diff == pytest.approx(expected, rel=1e-4)
    assert check_parity(changed, dynamic, x, atol=float(expected) + 1e-3).passed


def test_another_output_size_fails(exported):
    _, dynamic, _ = exported
    result = check_parity(linear(out=3), dynamic, samples(8))
    assert not result.passed and result.max_abs_diff == float("inf")


def test_a_module_without_a_tensor_output_is_refused(exported):
    _, dynamic, _ = exported

    class Named(torch.nn.Module):
        def forward(self, x):
            return {"scores": x}, "label"

    class Text(torch.nn.Module):
        def forward(self, x):
            return "no tensor"

    assert check_parity(Named(), dynamic, samples(2)).passed is False  # tensor found, wrong
    with pytest.raises(QtoolError, match="returned str"):
        check_parity(Text(), dynamic, samples(2))
