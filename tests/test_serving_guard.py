"""serving.guard: re-verification of the held bytes and the disk. A mismatch stops answers at
once and names the changed tensor; ECC repairs the disk and a verified copy is reloaded;
without parity the server waits until the files are restored; a replaced manifest or a
removed signature is never accepted."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from served_bundles import digits_bundle, digits_samples, flip_weight_bit

from qtool.deploy.signing import generate_keypair, load_trust
from qtool.deploy.verified import load_verified
from qtool.serving.guard import Guard
from qtool.serving.model import Concurrency, build_served
from qtool.serving.protocol import InferRequest


def make_guard(bundle, trust=None, repair=True) -> Guard:
    served = build_served(load_verified(bundle, trust), threads=1)
    return Guard(bundle, served, lambda v: build_served(v, threads=1), trust=trust, repair=repair)


def logits(guard: Guard, x: np.ndarray) -> np.ndarray:
    out = guard.current.infer(InferRequest({"x": x}, None, None), Concurrency())
    return np.array(out["outputs"][0]["data"]).reshape(len(x), -1)


def test_disk_flip_is_detected_repaired_and_reloaded(tmp_path, caplog):
    bundle = digits_bundle(tmp_path)
    guard = make_guard(bundle)
    x, expected = digits_samples()
    first = guard.current
    assert guard.check() and guard.checks == {"ok": 1, "mismatch": 0}
    original, _ = flip_weight_bit(bundle, element=17, bit=30)
    with caplog.at_level(logging.INFO, logger="qtool.serve"):
        assert guard.check()  # detected and recovered in the same pass
    assert guard.epoch == 1 and guard.repairs == 1 and guard.reloads == 1
    assert (bundle / "lin.onnx").read_bytes() == original
    assert guard.current is not first
    text = caplog.text
    assert "mismatch: disk: changed tensors w" in text and "element 17 bit 30" in text
    assert "repaired" in text and "restored" in text
    np.testing.assert_allclose(logits(guard, x), expected, rtol=1e-4, atol=1e-4)


def test_without_parity_it_waits_for_the_files(tmp_path):
    bundle = digits_bundle(tmp_path, ecc=False)
    guard = make_guard(bundle)
    original, _ = flip_weight_bit(bundle)
    assert not guard.check() and not guard.ready and guard.epoch == 1
    assert not guard.check() and guard.epoch == 1  # still waiting: one detection, one epoch
    (bundle / "lin.onnx").write_bytes(original)
    assert guard.check() and guard.reloads == 1 and guard.checks["mismatch"] == 2


def test_no_repair_leaves_the_disk_alone(tmp_path):
    bundle = digits_bundle(tmp_path)
    guard = make_guard(bundle, repair=False)
    flip_weight_bit(bundle)
    changed = (bundle / "lin.onnx").read_bytes()
    assert not guard.check() and (bundle / "lin.onnx").read_bytes() == changed


def test_held_bytes_corrupted_in_memory_are_reloaded_from_disk(tmp_path, caplog):
    bundle = digits_bundle(tmp_path)
    guard = make_guard(bundle)
    record = next(r for r in guard.current.verified.manifest["initializers"] if r["name"] == "b")
    held = bytearray(guard.current.verified.files["lin.onnx"])
    held[record["offset"] + 5] ^= 0x02
    guard.current.verified.files["lin.onnx"] = bytes(held)
    with caplog.at_level(logging.ERROR, logger="qtool.serve"):
        assert guard.check()
    assert "memory: the held bytes of lin.onnx changed (b (4 KiB blocks 0))" in caplog.text
    assert guard.current.verified.changed_files() == [] and guard.reloads == 1


def test_replaced_manifest_or_removed_signature_is_never_accepted(tmp_path):
    pytest.importorskip("cryptography")
    pair = generate_keypair(tmp_path / "key")
    trust = load_trust([pair.public])
    bundle = digits_bundle(tmp_path / "a", sign_key=pair.private)
    guard = make_guard(bundle, trust)
    signature = (bundle / "manifest.sig").read_bytes()
    (bundle / "manifest.sig").unlink()
    assert not guard.check()
    assert "unsigned" in guard.events[-2].detail
    (bundle / "manifest.sig").write_bytes(signature)
    assert guard.check()
    other = digits_bundle(tmp_path / "b", ecc=False, sign_key=pair.private)  # another bundle
    for name in ("manifest.json", "manifest.sig"):
        (bundle / name).write_bytes((other / name).read_bytes())
    assert not guard.check()
    assert "not the one verified at start" in guard.events[-2].detail
