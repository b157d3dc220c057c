"""Storage fault models: the registry and each model's eligible / draw / apply."""

from __future__ import annotations

import numpy as np
import pytest
from flip_models import digits_linear_bytes

from qtool.errors import QtoolError
from qtool.faults.storage.models import FAULT_MODELS, BitFlip, BitSite, StuckAt
from qtool.faults.storage.selection import Selection
from qtool.faults.storage.space import bit_space
from qtool.faults.storage.targets import select_targets


@pytest.fixture(scope="module")
def linear_model_bytes() -> bytes:
    return digits_linear_bytes()


def test_registry_names_aliases_and_unknown():
    assert FAULT_MODELS.names() == ["flip", "set", "reset"]
    assert FAULT_MODELS.get("stuck-at-1") is FAULT_MODELS.get("set")
    assert isinstance(FAULT_MODELS.get("reset"), StuckAt) and FAULT_MODELS.get("reset").value == 0
    with pytest.raises(QtoolError, match="unknown fault model 'rowhammer'") as caught:
        FAULT_MODELS.get("rowhammer", param="fault")
    assert caught.value.param == "fault" and "flip, set, reset" in str(caught.value)


@pytest.mark.parametrize(
    "name, byte, bit, expected",
    [
        ("flip", 0b1010_0000, 5, 0b1000_0000),
        ("flip", 0b0000_0000, 7, 0b1000_0000),
        ("set", 0b0000_0001, 3, 0b0000_1001),
        ("set", 0b0000_1000, 3, 0b0000_1000),  # already 1: no change
        ("reset", 0b1111_1111, 7, 0b0111_1111),
        ("reset", 0b0111_1111, 7, 0b0111_1111),
    ],
)
def test_hit_changes_one_bit_as_the_model_says(name, byte, bit, expected):
    assert FAULT_MODELS.get(name).hit(byte, bit) == expected


def test_eligible_are_the_bits_a_model_changes():
    values = np.array([0, 1, 1, 0, 1])
    assert BitFlip().eligible(values).all()
    assert StuckAt(1).eligible(values).tolist() == [True, False, False, True, False]
    assert StuckAt(0).eligible(values).tolist() == [False, True, True, False, True]
    assert not BitFlip.reads_values and StuckAt.reads_values


def test_apply_and_undo_are_byte_identical():
    buffers = {None: bytearray(range(16)), "w.bin": bytearray(b"\xff" * 8)}
    before = {k: bytes(v) for k, v in buffers.items()}
    sites = [BitSite(None, 3, 0), BitSite(None, 3, 7), BitSite("w.bin", 2, 4)]  # two in one byte
    undo = StuckAt(0).apply(buffers, sites)
    assert buffers[None][3] == 3 & ~1 & 0x7F and buffers["w.bin"][2] == 0xEF
    assert sum(a != b for a, b in zip(buffers[None], before[None], strict=True)) == 1
    undo.restore()
    assert {k: bytes(v) for k, v in buffers.items()} == before
    patches = BitFlip().patches(buffers, sites)
    assert patches == {None: {3: 3 ^ 0x81}, "w.bin": {2: 0xEF}}
    assert {k: bytes(v) for k, v in buffers.items()} == before  # patches write nothing


@pytest.mark.parametrize("name", ["flip", "set", "reset"])
def test_draw_gives_distinct_eligible_bits_reproducibly(linear_model_bytes, name):
    fault = FAULT_MODELS.get(name)
    buffers = {None: bytearray(linear_model_bytes)}
    targets = select_targets(buffers[None], Selection(positions=("exponent",)))
    space = bit_space(targets, buffers, fault)
    a = fault.draw(space, 200, np.random.default_rng(4), buffers)
    b = fault.draw(space, 200, np.random.default_rng(4), buffers)
    assert a == b and len(set(a)) == 200
    assert a == sorted(a, key=lambda r: (r.target, r.word, r.bit))
    for ref in a:
        t = targets[ref.target]
        site = t.site(ref.word, ref.bit)
        value = buffers[None][site.offset] >> site.bit & 1
        assert ref.bit in t.positions and fault.eligible(np.array([value]))[0]
    before = bytes(buffers[None])
    undo = fault.apply(buffers, [targets[r.target].site(r.word, r.bit) for r in a])
    flipped = np.unpackbits(
        np.frombuffer(before, np.uint8) ^ np.frombuffer(buffers[None], np.uint8)
    )
    assert int(flipped.sum()) == 200  # every drawn bit changed, nothing else did
    undo.restore()
    assert bytes(buffers[None]) == before
