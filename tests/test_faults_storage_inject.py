"""One injection: exactly the drawn bits change, the hashes describe the bytes, nothing is
written to disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from flip_models import digits_mlp, external

from qtool.errors import QtoolError
from qtool.faults.storage import FlipSettings, inject


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inject")
    mlp = digits_mlp(d / "mlp.onnx", hidden=16)
    return {"mlp": mlp, "ext": external(mlp, d / "ext")}


def _sha(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("fault", ["flip", "set", "reset"])
def test_only_drawn_bits_change_and_hashes_match(models, fault):
    src = models["ext"]
    weights = (src.parent / "weights.bin").read_bytes()
    result = inject(src, FlipSettings(bits=12, seed=9, targets=("all",), fault=fault))
    m = result.manifest
    changed = np.frombuffer(weights, np.uint8) ^ np.frombuffer(
        result.files.external["weights.bin"], np.uint8
    )
    assert int(np.unpackbits(changed).sum()) == 12 == len(m["flips"])
    assert result.files.main == src.read_bytes()  # the weights live in the external file
    assert m["source_files_sha256"] == {"weights.bin": _sha(weights)}
    assert m["flipped_files_sha256"] == {"weights.bin": _sha(result.files.external["weights.bin"])}
    assert m["source_sha256"] == m["flipped_sha256"] == _sha(src.read_bytes())
    for e in m["flips"]:
        old = e["old_byte"] >> e["bit_in_byte"] & 1
        assert fault == "flip" or old == (0 if fault == "set" else 1)
    assert (src.parent / "weights.bin").read_bytes() == weights  # nothing written


def test_hashes_of_an_inline_model(models):
    src = models["mlp"]
    result = inject(src, FlipSettings(bits=3, seed=1))
    assert result.manifest["source_sha256"] == _sha(src.read_bytes())
    assert result.manifest["flipped_sha256"] == _sha(result.files.main)
    assert len(result.flips) == 3 and result.targets


def test_too_many_bits_and_empty_selections(models):
    with pytest.raises(QtoolError, match="more than the .* eligible bits") as caught:
        inject(models["mlp"], FlipSettings(bits=10**7))
    assert caught.value.param == "bits" and "--" not in str(caught.value)
    with pytest.raises(QtoolError, match="no eligible bits") as caught:
        inject(models["mlp"], FlipSettings(targets=("qparams",)))
    assert caught.value.param == "targets"
