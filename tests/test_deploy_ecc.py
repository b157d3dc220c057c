"""deploy.ecc: the vectorised encoder equals reedsolo's; up to nsym/2 wrong bytes per chunk are
repaired (in data or parity), more are reported uncorrectable and left as they are."""

from __future__ import annotations

import numpy as np
import pytest
import reedsolo

from qtool.deploy.ecc import EccParams, damaged_chunks, encode_covers, encode_parity, repair
from qtool.errors import QtoolError


def random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def reedsolo_parity(data: bytes, nsym: int) -> bytes:
    """The parity reedsolo itself writes, chunk by chunk (a short last chunk is shortened)."""
    codec, k = reedsolo.RSCodec(nsym), 255 - nsym
    return b"".join(
        bytes(codec.encode(data[i : i + k]))[len(data[i : i + k]) :] for i in range(0, len(data), k)
    )


def corrupt(data: bytes, offsets, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    for offset in offsets:
        out[offset] ^= int(rng.integers(1, 256))
    return bytes(out)


@pytest.mark.parametrize("nsym", [2, 16, 32])
def test_parity_equals_reedsolo(nsym):
    params = EccParams(nsym)
    data = random_bytes(params.chunk * 7 + 11)
    parity = encode_parity(data, params)
    assert parity == reedsolo_parity(data, nsym)
    assert len(parity) == params.parity_size(len(data)) == 8 * nsym
    assert encode_parity(b"", params) == b""


@pytest.mark.parametrize("nsym", [2, 16, 32])
def test_up_to_half_nsym_wrong_bytes_per_chunk_are_repaired(nsym):
    params = EccParams(nsym)
    k, t = params.chunk, params.correctable
    data = random_bytes(k * 5 + 40, seed=nsym)
    parity = encode_parity(data, params)
    rng = np.random.default_rng(nsym)
    wrong = sorted(
        c * k + int(o) for c in range(6) for o in rng.choice(min(k, len(data) - c * k), t, False)
    )
    broken = corrupt(data, wrong)
    assert damaged_chunks(broken, parity, params) == list(range(6))
    fixed = repair(broken, parity, params)
    assert fixed.data == data and fixed.uncorrectable_chunks == []
    assert sorted(fixed.corrected_offsets) == wrong


def test_errors_in_data_and_parity_together_count_against_one_budget():
    params = EccParams(16)
    data = random_bytes(params.chunk * 2)
    parity = encode_parity(data, params)
    broken = corrupt(data, range(10, 15))  # 5 data bytes in chunk 0
    bad_parity = corrupt(parity, range(0, 3), seed=2)  # + 3 parity bytes of chunk 0 = 8
    fixed = repair(broken, bad_parity, params, damaged_chunks(broken, bad_parity, params))
    assert fixed.data == data and sorted(fixed.corrected_offsets) == list(range(10, 15))


def test_beyond_the_budget_is_reported_and_left_unchanged():
    params = EccParams(16)
    k = params.chunk
    data = random_bytes(k * 3)
    parity = encode_parity(data, params)
    broken = corrupt(data, [k + i * 7 for i in range(params.correctable + 1)] + [5])
    fixed = repair(broken, parity, params)
    assert fixed.uncorrectable_chunks == [1]
    assert fixed.data[k : 2 * k] == broken[k : 2 * k]  # the failed chunk is not guessed at
    assert fixed.data[:k] == data[:k] and fixed.corrected_offsets == [5]


def test_only_the_named_chunks_are_decoded():
    params = EccParams(16)
    data = random_bytes(params.chunk * 3)
    parity = encode_parity(data, params)
    broken = corrupt(data, [3, params.chunk * 2 + 3])
    fixed = repair(broken, parity, params, chunks=[2])
    assert fixed.corrected_offsets == [params.chunk * 2 + 3]
    assert fixed.data[:3] == data[:3] and fixed.data[3] == broken[3]


def test_parity_of_another_length_is_refused():
    params = EccParams(16)
    data = random_bytes(params.chunk * 2)
    with pytest.raises(QtoolError, match="belongs to another model"):
        repair(data, encode_parity(data[: -params.chunk], params), params)


def test_covers_lay_files_end_to_end():
    params = EccParams(16)
    files = [("a.onnx", random_bytes(1000, 1)), ("a.onnx.data", random_bytes(300, 2))]
    blob, covers = encode_covers(files, params)
    assert covers == [
        {"file": "a.onnx", "bytes": 1000, "parity_offset": 0, "parity_bytes": 5 * 16},
        {"file": "a.onnx.data", "bytes": 300, "parity_offset": 80, "parity_bytes": 2 * 16},
    ]
    assert blob == reedsolo_parity(files[0][1], 16) + reedsolo_parity(files[1][1], 16)
