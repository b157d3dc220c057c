"""`Dataset` subsampling and `DataSpec` round trips."""

from __future__ import annotations

import numpy as np

from qtool.data.dataset import Dataset, DataSpec


def _data(n: int = 10) -> Dataset:
    x = np.arange(n, dtype=np.float32).reshape(n, 1)
    return Dataset("t", "test", x, np.arange(n) % 3, ["a", "b", "c"], "tabular", {"k": 1})


def test_take_is_seeded_sorted_and_keeps_pairs():
    data = _data()
    part = data.take(4, seed=7)
    assert len(part) == 4 and part.num_classes == 3 and part.extra == {"k": 1}
    rows = part.x[:, 0].astype(int)
    assert list(rows) == sorted(rows) and np.array_equal(part.y, rows % 3)
    assert np.array_equal(data.take(4, seed=7).x, part.x)
    assert not all(np.array_equal(data.take(4, seed=s).x, part.x) for s in range(8, 12))
    assert data.take(None) is data and data.take(99) is data


def test_unlabelled_take_and_spec_text():
    data = Dataset("t", "train", np.zeros((5, 2), np.float32), None, [], "tabular")
    assert data.take(2).y is None
    assert str(DataSpec("npz", "/a:b.npz", "val")) == "npz:/a:b.npz:val"
    assert (
        str(DataSpec("digits", None, None)) == "digits"
        and DataSpec("digits", None, None).path is None
    )
