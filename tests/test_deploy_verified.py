"""deploy.verified: the held bytes are the verified bytes; external data is inlined from them;
memory corruption of the held copy is detected; a changed bundle is refused."""

from __future__ import annotations

import numpy as np
import pytest
from builders import digits_linear_weights, linear_image_model

from qtool.deploy.bundle import package
from qtool.deploy.verified import load_verified
from qtool.errors import WorkFailed
from qtool.modelfile.metadata import set_metadata
from qtool.modelfile.save import save_model
from qtool.runtimes import make_session


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("verified")
    w, b = digits_linear_weights()
    proto = linear_image_model(w, b)
    set_metadata(proto, {"qtool.model": "lin"})
    (tmp / "ext").mkdir()
    package(save_model(proto, tmp / "ext" / "lin.onnx", external=True), tmp / "external")
    (tmp / "one").mkdir()
    package(save_model(proto, tmp / "one" / "digits.onnx"), tmp / "single")
    return tmp, w, b


def test_external_data_is_inlined_from_the_held_bytes(bundles):
    tmp, w, b = bundles
    model = load_verified(tmp / "external")
    assert sorted(model.files) == ["lin.onnx", "lin.onnx.data"] and model.name == "lin"
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    out = make_session(model.session_bytes()).run(None, {"x": x})[0]
    np.testing.assert_allclose(out, x.reshape(4, -1) @ w + b, rtol=1e-5, atol=1e-5)
    assert model.signature.status == "unsigned" and len(model.manifest_sha256) == 64


def test_name_falls_back_to_the_file_stem_and_memory_changes_are_seen(bundles):
    tmp, _, _ = bundles
    model = load_verified(tmp / "single")
    assert model.name == "lin"  # metadata wins over the stem
    model.manifest["model_name"] = None
    model.metadata.pop("model")
    assert model.name == "digits"
    assert model.changed_files() == []
    held = bytearray(model.files["digits.onnx"])
    held[-40] ^= 0x04
    model.files["digits.onnx"] = bytes(held)
    assert model.changed_files() == ["digits.onnx"]


def test_changed_bundle_is_refused(bundles, tmp_path):
    import shutil

    tmp, _, _ = bundles
    shutil.copytree(tmp / "external", tmp_path / "b")
    (tmp_path / "b" / "stray.txt").write_text("not packaged")
    with pytest.raises(WorkFailed, match=r"failed verification \(stray.txt not in the manifest\)"):
        load_verified(tmp_path / "b")
