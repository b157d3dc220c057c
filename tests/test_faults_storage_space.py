"""The eligible bit space: block layout per fault model, and sampling in it."""

from __future__ import annotations

import numpy as np
import pytest
from flip_models import digits_linear_bytes

from qtool.errors import QtoolError
from qtool.faults.storage.models import FAULT_MODELS
from qtool.faults.storage.selection import Selection
from qtool.faults.storage.space import BitRef, bit_space, sample_indices
from qtool.faults.storage.targets import select_targets


@pytest.fixture(scope="module")
def model() -> tuple[dict, list]:
    buffers = {None: bytearray(digits_linear_bytes())}
    targets = select_targets(buffers[None], Selection(targets=("weights", "biases")))
    return buffers, targets


@pytest.mark.parametrize("n, total", [(5, 10**9), (700, 1000), (1000, 1000), (0, 7)])
def test_sample_indices_distinct_sorted_in_range_and_seeded(n, total):
    a = sample_indices(np.random.default_rng(1), total, n)
    assert len(a) == n == len(np.unique(a)) and (np.diff(a) > 0).all()
    assert n == 0 or (0 <= a.min() and a.max() < total)
    assert np.array_equal(a, sample_indices(np.random.default_rng(1), total, n))
    if 0 < n < total:
        assert not np.array_equal(a, sample_indices(np.random.default_rng(2), total, n))


@pytest.mark.parametrize("n", [50, 600])  # the sparse path (rejection) and the dense one
def test_sample_indices_are_uniform(n):
    total, draws = 1000, 400
    counts = np.zeros(total)
    for seed in range(draws):
        counts[sample_indices(np.random.default_rng(seed), total, n)] += 1
    expected = draws * n / total
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < total + 5 * np.sqrt(2 * total)  # ~5 sigma above the chi-square mean
    tenths = counts.reshape(10, -1).sum(axis=1)
    assert np.abs(tenths - tenths.mean()).max() < 0.05 * tenths.mean()


def test_too_many_bits_names_the_parameter():
    with pytest.raises(QtoolError, match="only 10 are eligible") as caught:
        sample_indices(np.random.default_rng(0), 10, 11)
    assert caught.value.param == "bits"


def test_flip_space_is_one_word_major_block_per_tensor(model):
    buffers, targets = model
    space = bit_space(targets, buffers, FAULT_MODELS.get("flip"))
    sizes = [t.words * len(t.positions) for t in targets]
    assert space.total == sum(sizes) == 650 * 32
    assert space.block_bit.tolist() == [-1] * len(targets)
    assert space.per_target().tolist() == sizes
    # index 0 is bit 0 of word 0; index 33 is bit 1 of word 1 of the first tensor
    refs = space.locate(np.array([0, 33, sizes[0]]), buffers)
    assert refs == [BitRef(0, 0, 0), BitRef(0, 1, 1), BitRef(1, 0, 0)]


@pytest.mark.parametrize("name, value", [("set", 0), ("reset", 1)])
def test_stuck_at_space_counts_the_bits_that_change(model, name, value):
    buffers, targets = model
    space = bit_space(targets, buffers, FAULT_MODELS.get(name))
    expected = 0
    for t in targets:
        words = np.frombuffer(buffers[None], np.uint32, t.words, t.loc.offset)
        expected += sum(int(((words >> p) & 1 == value).sum()) for p in t.positions)
    assert space.total == expected
    every = space.locate(np.arange(space.total), buffers)
    assert len(set(every)) == space.total
    for ref in every[:: max(1, space.total // 500)]:
        site = targets[ref.target].site(ref.word, ref.bit)
        assert buffers[None][site.offset] >> site.bit & 1 == value
