"""make_session: real ONNX Runtime sessions built through the provider specs."""

from __future__ import annotations

import numpy as np
import pytest
from builders import conv_model, save
from onnx import TensorProto, helper

from qtool.errors import QtoolError
from qtool.runtimes.session import failed_op, make_session, resolve_providers, session_options


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_and_spinning_are_pinned_as_asked(threads):
    session = make_session(conv_model(0), threads=threads, spinning=False)
    options = session.get_session_options()
    assert options.intra_op_num_threads == threads
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_default_threads_are_left_to_onnxruntime_and_spinning_untouched():
    options = make_session(conv_model(0)).get_session_options()
    assert options.intra_op_num_threads == 0  # 0: ORT picks one per physical core
    with pytest.raises(RuntimeError, match="does not have configuration"):
        options.get_session_config_entry("session.intra_op.allow_spinning")


def test_path_bytes_and_proto_give_the_same_outputs(tmp_path):
    proto = conv_model(1)
    path = save(proto, tmp_path / "m.onnx")
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    outs = [
        make_session(source, providers=["cpu"]).run(None, {"x": x})[0]
        for source in (proto, proto.SerializeToString(), path, str(path))
    ]
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


def test_opt_levels_and_bad_inputs():
    assert make_session(conv_model(0), opt_level="disable").get_session_options() is not None
    with pytest.raises(QtoolError, match="unknown graph optimisation level") as info:
        session_options(opt_level="max")
    assert info.value.param == "opt_level"
    with pytest.raises(QtoolError, match=r"provider cpu \(CPUExecutionProvider\) cannot load"):
        make_session(b"not an onnx model")
    with pytest.raises(QtoolError, match="unknown execution provider") as info:
        make_session(conv_model(0), providers=["nosuch"])
    assert info.value.param == "providers"


def test_resolve_providers_gives_onnxruntime_names():
    assert resolve_providers(None) == ["CPUExecutionProvider"]
    assert resolve_providers(["cpu", "CPUExecutionProvider"]) == ["CPUExecutionProvider"] * 2


def _one_node_model(op: str, elem: int, domain: str = "", opsets=(("", 17),)):
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], domain=domain, name="n0")],
        "g",
        [helper.make_tensor_value_info("x", elem, ["N", 4])],
        [helper.make_tensor_value_info("y", elem, ["N", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(*o) for o in opsets])
    model.ir_version = 9
    return model


def test_a_model_the_provider_cannot_load_names_the_provider_and_the_op():
    """Real refusals of the CPU provider: a custom-domain op, and an op without a kernel for
    its type (Abs on bfloat16)."""
    custom = _one_node_model(
        "Mystery", TensorProto.FLOAT, "custom.qtool", (("", 17), ("custom.qtool", 1))
    )
    with pytest.raises(QtoolError) as info:
        make_session(custom)
    message = str(info.value)
    assert message.startswith("execution provider cpu (CPUExecutionProvider) cannot load")
    assert "op custom.qtool:Mystery is not supported" in message and "\n" not in message
    with pytest.raises(QtoolError, match=r"op Abs \(opset 13, node 'n0'\) is not supported"):
        make_session(_one_node_model("Abs", TensorProto.BFLOAT16))


def test_failed_op_reads_onnxruntimes_three_wordings():
    assert failed_op("Could not find an implementation for Conv(11) node with name 'c'") == (
        "Conv (opset 11, node 'c')"
    )
    assert failed_op("Fatal error: my.dom:Op(-1) is not a registered function/op") == "my.dom:Op"
    assert failed_op("No Op registered for Foo with domain_version of 17") == "Foo (opset 17)"
    assert failed_op("protobuf parsing failed") is None


def test_precision_reaches_the_spec():
    session = make_session(conv_model(0), threads=1, precision="auto")
    assert session.get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(QtoolError, match="unknown precision") as info:
        make_session(conv_model(0), precision="fp16")
    assert info.value.param == "precision"
