"""deploy.predict: a verified bundle (folder, archive, external data) classifies like the
numpy model it holds; a bundle that fails verification is refused."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from builders import digits_linear_weights, linear_image_model

from qtool.data.datasets import load_dataset
from qtool.deploy.archive import write_archive
from qtool.deploy.bundle import package
from qtool.deploy.predict import predict_bundle, probabilities
from qtool.errors import QtoolError, WorkFailed
from qtool.modelfile.metadata import set_metadata
from qtool.modelfile.save import save_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A linear digits model saved with external data, its bundle, and 12 test images."""
    tmp = tmp_path_factory.mktemp("predict")
    w, b = digits_linear_weights()
    proto = linear_image_model(w, b)
    set_metadata(proto, {"qtool.class_names": [f"digit {i}" for i in range(10)]})
    (tmp / "src").mkdir()
    model = save_model(proto, tmp / "src" / "lin.onnx", external=True)
    package(model, tmp / "bundle")
    images = (load_dataset("digits:test").x[:12, 0] * 255).round().astype(np.uint8)
    np.savez(tmp / "s.npz", images=images)
    expected = np.argmax((images.reshape(12, -1) / 255.0) @ w + b, axis=1)
    return tmp, expected


def test_probabilities_pass_through_or_softmax():
    probs = np.array([[0.2, 0.8], [1.0, 0.0]])
    assert probabilities(probs) is probs
    logits = np.array([[0.0, np.log(3.0)], [5.0, 5.0]])
    np.testing.assert_allclose(probabilities(logits), [[0.25, 0.75], [0.5, 0.5]])


def test_folder_and_archive_predict_the_numpy_labels(setup, tmp_path):
    tmp, expected = setup
    manifest = json.loads((tmp / "bundle" / "manifest.json").read_text())
    assert manifest["model"]["data_files"] == ["lin.onnx.data"]
    archive = tmp_path / "bundle.zip"
    write_archive(tmp / "bundle", archive, "zip")
    for source in (tmp / "bundle", archive):
        predictions, info = predict_bundle(source, [tmp / "s.npz"])
        assert [p.label for p in predictions] == expected.tolist()
        assert [p.class_name for p in predictions[:2]] == [f"digit {i}" for i in expected[:2]]
        npz = f"{tmp / 's.npz'}:images"  # the file and the array its rows came from
        assert [(p.source, p.index) for p in predictions[:2]] == [(npz, 0), (npz, 1)]
        assert all(0.0 < p.probability <= 1.0 for p in predictions)
        assert info["manifest_sha256"] == manifest_sha(tmp / "bundle")


def manifest_sha(folder) -> str:
    return hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()


def test_changed_bundle_is_refused(setup, tmp_path):
    tmp, _ = setup
    shutil.copytree(tmp / "bundle", tmp_path / "b")
    data = bytearray((tmp_path / "b" / "lin.onnx.data").read_bytes())
    data[100] ^= 0x01
    (tmp_path / "b" / "lin.onnx.data").write_bytes(bytes(data))
    with pytest.raises(WorkFailed, match=r"failed verification \(tensor w changed\)"):
        predict_bundle(tmp_path / "b", [tmp / "s.npz"])
    with pytest.raises(QtoolError, match="does not exist"):
        predict_bundle(tmp_path / "nope", [tmp / "s.npz"])


def test_signed_bundle_with_trust_and_dicom_inputs(setup, tmp_path):
    """A DICOM of the same pixels predicts exactly as the PNG does; --trust refuses a bundle
    signed by another key."""
    pytest.importorskip("cryptography")
    pytest.importorskip("pydicom")
    from dicom_files import write_dicom
    from PIL import Image

    from qtool.deploy.signing import SignatureRefused, generate_keypair, load_trust

    tmp, expected = setup
    keys = {n: generate_keypair(tmp_path / n) for n in ("release", "other")}
    src = tmp / "src" / "lin.onnx"
    package(src, tmp_path / "signed", sign_key=keys["release"].private)
    images = (load_dataset("digits:test").x[:3, 0] * 255).round().astype(np.uint8)
    Image.fromarray(images[0]).save(tmp_path / "a.png")
    write_dicom(tmp_path / "a.dcm", images, WindowCenter=128, WindowWidth=256)
    trust = load_trust([keys["release"].public])
    png, info = predict_bundle(tmp_path / "signed", [tmp_path / "a.png"], trust)
    dcm, _ = predict_bundle(tmp_path / "signed", [tmp_path / "a.dcm"], trust)
    assert "signed by trusted key" in info["signer"]
    assert [p.label for p in dcm] == expected[:3].tolist()
    assert (dcm[0].label, dcm[0].probability) == (png[0].label, pytest.approx(png[0].probability))
    assert [p.index for p in dcm] == [0, 1, 2]
    other = load_trust([keys["other"].public])
    with pytest.raises(SignatureRefused, match="not in the trust list"):
        predict_bundle(tmp_path / "signed", [tmp_path / "a.png"], other)
    _, plain = predict_bundle(tmp / "bundle", [tmp_path / "a.png"])
    assert plain["signer"] == "signer unverified: the bundle is unsigned"
