"""exporters.pytorch: each exporter writes the graph ONNX Runtime runs like torch, with the
batch symbolic or fixed as asked; what an exporter cannot do is refused before exporting."""

from __future__ import annotations

import textwrap

import numpy as np
import onnxruntime as ort
import pytest

from qtool.errors import QtoolError, WorkFailed

torch = pytest.importorskip("torch")

from qtool.exporters.pytorch import (  # noqa: E402
    EXPORTERS,
    INPUT_NAME,
    OUTPUT_NAME,
    export_onnx,
    is_factory_spec,
    load_factory,
)


def small_module():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(3 * 4 * 4, 5),
    )  # fmt: skip


def run_both(module, proto, batch: int):
    x = np.random.default_rng(batch).standard_normal((batch, 1, 4, 4)).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    return session.run(None, {INPUT_NAME: x})[0], expected


@pytest.fixture(scope="module")
def dynamo_proto():
    module = small_module()
    return module, export_onnx(module, (1, 1, 4, 4))


def test_dynamo_export_has_a_symbolic_batch_and_matches_torch(dynamo_proto):
    module, proto = dynamo_proto
    assert [i.name for i in proto.graph.input] == [INPUT_NAME]
    assert [o.name for o in proto.graph.output] == [OUTPUT_NAME]
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value
    assert next(o.version for o in proto.opset_import if o.domain == "") == 18
    for n in (1, 7):
        got, expected = run_both(module, proto, n)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_debug_info_is_stripped(dynamo_proto):
    _, proto = dynamo_proto
    assert proto.doc_string == "" and proto.graph.doc_string == ""
    for node in proto.graph.node:
        assert node.doc_string == "" and len(node.metadata_props) == 0
    assert all(len(t.metadata_props) == 0 for t in proto.graph.initializer)


def test_torchscript_export_with_a_static_batch():
    module = small_module()
    proto = export_onnx(module, (3, 1, 4, 4), exporter="torchscript", dynamic_batch=False)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3
    assert next(o.version for o in proto.opset_import if o.domain == "") == 17
    got, expected = run_both(module, proto, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_what_an_exporter_cannot_do_is_refused_first():
    with pytest.raises(QtoolError, match="opset >= 18") as caught:
        export_onnx(small_module(), (1, 1, 4, 4), opset=17)
    assert caught.value.param == "opset" and "torchscript" in str(caught.value)
    with pytest.raises(QtoolError, match="unknown exporter 'onnxmltools'") as caught:
        export_onnx(small_module(), (1, 1, 4, 4), exporter="onnxmltools")
    assert caught.value.param == "exporter"
    assert {name: e.default_opset for name, e in EXPORTERS.items()} == {
        "dynamo": 18,
        "torchscript": 17,
    }


class Refuses(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.export cannot trace it
            return x
        return -x


def test_exporter_failure_is_work_failed_with_its_cause_and_fitting_advice(capfd):
    with pytest.raises(WorkFailed, match="the dynamo exporter failed") as caught:
        export_onnx(Refuses(), (1, 4))
    message = str(caught.value)
    assert "data-dependent" in message and "torchscript exporter" in message
    assert "\x1b" not in message and "\n" not in message and "static batch" not in message
    assert "GraphModule" not in capfd.readouterr().err  # torch.export's dumps are silenced


def test_a_wrong_input_shape_is_bad_input_with_torchs_reason():
    with pytest.raises(QtoolError, match="expected input.* to have 1 channels") as caught:
        export_onnx(small_module(), (1, 3, 4, 4))
    assert caught.value.param == "input_shape"
    assert "the input shape is wrong for this model" in str(caught.value)


def test_user_factories(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(
        textwrap.dedent(
            """
            import torch

            def build():
                return torch.nn.Linear(4, 2)

            def broken():
                raise RuntimeError("no weights here")

            def number():
                return 3
            """
        )
    )
    assert is_factory_spec(f"{path}:build") and not is_factory_spec("cnn")
    assert not is_factory_spec(f"{tmp_path}/net.txt:build")
    module, source = load_factory(f"{path}:build")
    assert isinstance(module, torch.nn.Linear) and source == path
    for spec, message in [
        (f"{path}:missing", "no callable 'missing'; callables there: broken, build, number"),
        (f"{path}:broken", "broken() failed: RuntimeError: no weights here"),
        (f"{path}:number", "returned int, not a torch.nn.Module"),
        (f"{tmp_path}/absent.py:build", "does not exist"),
    ]:
        with pytest.raises(QtoolError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_factory(spec)
