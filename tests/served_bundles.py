"""Bundles for the server tests: the linear digits classifier (weights fitted on real data),
signed and with ECC parity, and what it should answer, computed with numpy."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from builders import digits_linear_weights, linear_image_model, save

from qtool.data.datasets import load_dataset
from qtool.deploy.bundle import package
from qtool.modelfile.metadata import set_metadata

CLASS_NAMES = [f"digit {i}" for i in range(10)]
weights = functools.cache(digits_linear_weights)  # fitted once per test session


def digits_bundle(folder: Path, *, ecc: bool = True, sign_key: Path | None = None) -> Path:
    """A bundle of the linear digits model named "lin" with class names, in `folder`/bundle."""
    w, b = weights()
    proto = linear_image_model(w, b)
    set_metadata(proto, {"qtool.model": "lin", "qtool.class_names": CLASS_NAMES})
    folder.mkdir(parents=True, exist_ok=True)
    model = save(proto, folder / "lin.onnx")
    return package(model, folder / "bundle", ecc=ecc, sign_key=sign_key).out


def digits_samples(n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """n test digits (N, 1, 8, 8) in [0, 1] and the logits the numpy model gives them."""
    w, b = weights()
    x = load_dataset("digits:test").x[:n].astype(np.float32)
    return x, x.reshape(n, -1) @ w + b


def infer_body(x: np.ndarray) -> dict:
    return {
        "inputs": [
            {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }


def flip_weight_bit(bundle: Path, element: int = 17, bit: int = 30) -> tuple[bytes, int]:
    """XOR one bit of element `element` of weight `w` in the bundle's model file on disk;
    return the original file bytes and the byte offset changed."""
    import json

    manifest = json.loads((bundle / "manifest.json").read_text())
    record = next(r for r in manifest["initializers"] if r["name"] == "w")
    path = bundle / record["file"]
    original = path.read_bytes()
    data = bytearray(original)
    offset = record["offset"] + element * 4 + bit // 8
    data[offset] ^= 1 << (bit % 8)
    path.write_bytes(bytes(data))
    return original, offset
