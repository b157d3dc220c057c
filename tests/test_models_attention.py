"""Local self-attention: the export form (one-hot gather Conv) computes the training form."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from qtool.exporters.pytorch import export_onnx  # noqa: E402
from qtool.models.attention import LocalSelfAttention, one_hot_gather  # noqa: E402


def test_one_hot_gather_weights_are_exactly_zero_and_one():
    weight = one_hot_gather(4, 3)
    assert weight.shape == (36, 1, 3, 3)
    assert set(torch.unique(weight).tolist()) == {0.0, 1.0}
    assert torch.equal(weight.reshape(36, 9).sum(1), torch.ones(36))
    # channel c * 9 + n copies offset n, row-major like F.unfold
    assert weight[3 * 9 + 5, 0, 1, 2] == 1


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(6, 7), (7, 7), (8, 8)])
def test_gather_form_equals_unfold_form(stride, size):
    torch.manual_seed(0)
    layer = LocalSelfAttention(8, 24, heads=4, stride=stride)  # head_dim 6: scale not 2^k
    x = torch.randn(3, 8, *size)
    layer.form = "unfold"
    unfolded = layer(x)
    layer.form = "gather"
    gathered = layer(x)
    expect = tuple(-(-s // stride) for s in size)
    assert unfolded.shape == gathered.shape == (3, 24, *expect)
    assert torch.allclose(unfolded, gathered, atol=1e-5)


def test_torch_runs_the_training_form_and_the_export_the_gather_form():
    layer = LocalSelfAttention(8, 16)
    assert "gather" not in dict(layer.named_parameters())  # not a parameter
    assert "gather" not in layer.state_dict()  # nor in checkpoints
    layer.eval()
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(
        layer(x),
        layer._attend_unfold(layer.query(x) * 0.5, layer.key(x), layer.value(x)).reshape(
            2, 16, 5, 5
        ),
    )


def test_exported_layers_match_the_torch_training_form():
    """Random weights, stride 1 and 2, odd size: the ONNX graph (gather form) in ONNX Runtime
    against torch (unfold form), with no Pad/Slice/Concat in the graph. (A whole medium SASA
    goes through `qtool export`'s parity check in test_train.)"""
    torch.manual_seed(0)
    model = torch.nn.Sequential(LocalSelfAttention(3, 16), LocalSelfAttention(16, 24, stride=2))
    proto = export_onnx(model.eval(), (1, 3, 15, 15))
    ops = {n.op_type for n in proto.graph.node}
    assert not ops & {"Pad", "Slice", "Concat", "Transpose", "Gather"}
    assert sum(n.op_type == "Conv" and n.input[1].endswith("gather") for n in proto.graph.node) == 4
    x = torch.randn(5, 3, 15, 15)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    assert got.shape == (5, 24, 8, 8)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3)
