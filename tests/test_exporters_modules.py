"""exporters.modules: each exported tensor keeps the name of the torch module that computed it
(a folded batch norm named with its convolution), for both exporters, after debug info goes;
the quantisation report's rows carry it."""

from __future__ import annotations

import json

import pytest

from qtool.exporters.modules import TENSOR_MODULES_KEY, scope_of_node_name

torch = pytest.importorskip("torch")

from qtool.exporters.pytorch import export_onnx  # noqa: E402


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(4)

    def forward(self, x):
        return torch.relu(self.bn1(self.conv1(x)))


def net():
    torch.manual_seed(0)
    layer = torch.nn.Sequential(Block())
    head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 3))
    return torch.nn.Sequential(torch.nn.ModuleDict({"layer3": layer})["layer3"], head).eval()


def recorded(proto) -> dict:
    found = {p.key: p.value for p in proto.metadata_props}
    return json.loads(found[TENSOR_MODULES_KEY])


def test_torchscript_node_names_give_module_paths():
    assert scope_of_node_name("/layer3/layer3.0/conv1/Conv") == "layer3.0.conv1"
    assert scope_of_node_name("/stage2/shortcut/shortcut.0/Conv") == "stage2.shortcut.0"
    assert scope_of_node_name("node_Conv_314") is None and scope_of_node_name("/Flatten") is None


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_exported_tensors_name_their_modules(exporter):
    proto = export_onnx(net(), (1, 1, 4, 4), exporter=exporter)
    modules = recorded(proto)
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    assert all(len(n.metadata_props) == 0 for n in proto.graph.node)  # debug info is gone
    if exporter == "dynamo":  # the batch norm folded into the Conv is named with it
        assert modules[conv.output[0]] == "0.0.conv1 + 0.0.bn1"
    else:  # TorchScript folds it too, under the convolution's own name
        assert modules[conv.output[0]] == "0.0.conv1"
    gemm = next(n for n in proto.graph.node if n.op_type == "Gemm")
    assert modules[gemm.output[0]] == "1.1"


def test_quantize_report_rows_carry_the_source_module(zoo_models, tmp_path):
    from qtool.quantization.quantize import quantize_model

    report = quantize_model(zoo_models["cnn"], tmp_path / "cnn.int8.onnx", "digits")
    modules = {e.tensor: e.module for e in report.tensor_errors}
    assert "stage1.op2 + stage1.bn2" in modules.values()
    assert "head" in modules.values()
