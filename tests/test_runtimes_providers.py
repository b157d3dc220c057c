"""Provider specs: the registry, why a provider is unusable here, and the plugin hook."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json

import onnxruntime as ort
import pytest

from qtool.errors import QtoolError
from qtool.runtimes.providers import (
    BUILT_IN,
    PLUGIN,
    PRECISIONS,
    PROVIDERS,
    PluginLibrary,
    ProviderSpec,
    compared_specs,
    list_providers,
    provider_spec,
    provider_specs,
    session_specs,
)


def test_cpu_is_the_default_and_found_by_every_alias():
    assert provider_specs(None) == [PROVIDERS.get("cpu")]
    for name in ("cpu", "CPU", "CPUExecutionProvider", "cpuexecutionprovider"):
        spec = provider_spec(name)
        assert spec.name == "cpu" and spec.ort_name == "CPUExecutionProvider"
    cpu = PROVIDERS.get("cpu")
    assert cpu.source == BUILT_IN and cpu.unusable_reason() is None
    assert "intra_op_num_threads" in cpu.threads_pinned_by
    assert "INT8" in cpu.precision and "FP32" in cpu.precision


def test_list_shows_every_provider_onnxruntime_names_with_a_reason():
    rows = list_providers()
    listed = {row.spec.ort_name for row in rows}
    assert set(ort.get_all_providers()) | set(ort.get_available_providers()) <= listed
    assert rows[0].spec.name == "cpu" and rows[0].usable
    available = set(ort.get_available_providers())
    for row in rows:
        assert row.usable == (row.reason is None)
        if row.usable:
            assert row.spec.ort_name in available and row.spec.out_of_scope is None
        else:
            assert row.reason  # every unusable provider says why
    reasons = {row.spec.name: row.reason for row in rows}
    assert reasons["cuda"] == "out of scope: GPU"
    if "DnnlExecutionProvider" not in available:
        assert reasons["dnnl"].startswith("not in this onnxruntime build")
    order = [(not r.usable, r.spec.out_of_scope is not None) for r in rows]
    assert order == sorted(order)  # usable, then missing here, then out of scope


def test_unknown_and_unusable_providers_are_bad_input_naming_the_param():
    with pytest.raises(QtoolError, match="unknown execution provider 'nosuch'") as info:
        provider_spec("nosuch")
    assert info.value.param == "providers"
    assert "usable here: cpu (CPUExecutionProvider)" in str(info.value)
    if "DnnlExecutionProvider" not in ort.get_available_providers():
        assert "CPU providers not usable here: " in str(info.value) and "dnnl" in str(info.value)
    assert "cuda" not in str(info.value)  # out of scope everywhere: left to the list
    with pytest.raises(QtoolError, match="out of scope") as info:
        provider_specs(["cpu", "cuda"], param="provider")
    assert info.value.param == "provider" and "'cuda' (CUDAExecutionProvider)" in str(info.value)


def test_provider_options_carry_the_thread_option_when_a_spec_has_one():
    spec = ProviderSpec(
        "own-threads",
        "CPUExecutionProvider",
        "test spec",
        options={"mode": "fast"},
        thread_option="num_of_threads",
    )
    assert spec.provider_options(3, "auto") == {"mode": "fast", "num_of_threads": "3"}
    assert spec.provider_options(None, "auto") == {"mode": "fast"}
    assert "provider option num_of_threads" in spec.threads_pinned_by
    assert PROVIDERS.get("cpu").provider_options(4) == {}  # cpu: session options only
    facts = spec.describe()
    assert facts["ort_name"] == "CPUExecutionProvider" and facts["options"] == {"mode": "fast"}


def test_precision_fp32_is_refused_where_qtool_cannot_pin_it():
    generic = ProviderSpec("generic", "CPUExecutionProvider", "test spec")
    with pytest.raises(QtoolError, match="cannot pin execution provider generic") as info:
        generic.provider_options(1, "fp32")
    assert info.value.param == "precision" and "use precision auto" in str(info.value)
    with pytest.raises(QtoolError, match="unknown precision 'bf16'"):
        PROVIDERS.get("cpu").check_precision("bf16")
    cpu = PROVIDERS.get("cpu")
    assert set(cpu.precision_modes) == set(PRECISIONS)
    assert cpu.describe("auto")["precision_mode"] == "auto"


def test_openvino_pins_threads_and_precision_through_load_config():
    """Plugin 1.8 ignores num_of_threads/precision options: everything goes in load_config,
    spelled as OpenVINO parses it ("f32"; OpenVINO 2026.4 refuses "F32")."""
    ov = PROVIDERS.get("openvino")
    assert PROVIDERS.get("OpenVINOExecutionProvider") is ov and ov.source == PLUGIN
    pinned = json.loads(ov.provider_options(2, "fp32")["load_config"])
    assert pinned == {
        "CPU": {"INFERENCE_NUM_THREADS": "2", "INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": "1"}
    }
    free = json.loads(ov.provider_options(1, "auto")["load_config"])
    assert "INFERENCE_PRECISION_HINT" not in free["CPU"]  # auto: OpenVINO's own choice
    assert "INFERENCE_NUM_THREADS" in ov.threads_pinned_by
    assert "f32" in ov.describe("fp32")["precision"] and "bf16" in ov.describe("auto")["precision"]
    assert ov.describe()["plugin"]["package"] == "onnxruntime-ep-openvino"


def test_openvino_says_why_it_is_not_usable_from_what_the_plugin_reports():
    reason = PROVIDERS.get("openvino").unusable_reason()
    if reason is None:
        pytest.skip("OpenVINO offers a CPU device here: the usable path is tested in sessions")
    if importlib.util.find_spec("onnxruntime_ep_openvino") is None:
        assert reason.startswith("needs its plugin package: pip install 'qtool[openvino]'")
    else:  # installed, registered, but no CPU device: say what the plugin and onnxruntime report
        version = importlib.metadata.version("onnxruntime-ep-openvino")
        assert reason.startswith(f"installed (onnxruntime-ep-openvino {version}) but offers no CPU")
        vendor = next(d.device.vendor for d in ort.get_ep_devices() if d.device.type.name == "CPU")
        assert f"on this {vendor} CPU" in reason and "Intel devices only" in reason
    with pytest.raises(QtoolError, match="'openvino' .* cannot be used here") as info:
        provider_spec("openvino", param="providers")
    assert reason in str(info.value)


def test_compared_and_session_lists():
    assert [s.name for s in compared_specs(["cpu"])] == ["cpu"]
    with pytest.raises(QtoolError, match="named twice"):
        compared_specs(["cpu", "CPUExecutionProvider"])
    assert [s.name for s in session_specs(None)] == ["cpu"]
    if PROVIDERS.get("openvino").unusable_reason() is None:  # a plugin runs alone
        with pytest.raises(QtoolError, match="only provider of a session"):
            session_specs(["openvino", "cpu"])


def test_the_provider_list_as_a_report_names_every_provider_with_its_reason():
    rows = [r.to_dict() for r in list_providers()]
    assert {r["name"] for r in rows} >= {"cpu", "openvino", "cuda"}
    for row in rows:
        assert row["usable"] == (row["reason"] is None)
        assert set(row["precision_modes"]) <= set(PRECISIONS)
    assert next(r for r in rows if r["name"] == "cuda")["out_of_scope"] is True


def test_plugin_hook_says_what_to_install_or_why_registration_failed(tmp_path):
    missing = ProviderSpec(
        "plugin-missing",
        "NoSuchExecutionProvider",
        "a plugin whose package is not installed",
        plugin=PluginLibrary(
            "onnxruntime-ep-nosuch", "qtool_no_such_plugin", lambda m: "x.so", "qtool-test-1"
        ),
    )
    assert missing.source == PLUGIN
    assert missing.unusable_reason() == (
        "needs its plugin package: pip install onnxruntime-ep-nosuch"
    )
    not_a_library = tmp_path / "libfake_ep.so"
    not_a_library.write_bytes(b"not a shared library")
    broken = ProviderSpec(
        "plugin-broken",
        "FakeExecutionProvider",
        "a plugin package shipping a file that is no library",
        plugin=PluginLibrary(
            "fake-ep", "json", lambda module: str(not_a_library), "qtool-test-broken"
        ),
    )
    reason = broken.unusable_reason()
    assert reason is not None and reason.startswith("its plugin library failed to register")


def test_the_plugin_probe_model_runs_on_the_cpu_provider():
    """The probe a plugin must pass before it is called usable is a real, valid model."""
    import numpy as np
    import onnxruntime as ort

    from qtool.runtimes.providers import _probe_model

    session = ort.InferenceSession(_probe_model(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.ones((1, 4), dtype=np.float32)})
    assert y.tolist() == [[12.0, 16.0]]
