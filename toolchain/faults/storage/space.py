"""The eligible bit space: every bit a fault may hit, as one index range, and sampling in it.

N bits means N distinct bits drawn uniformly over all eligible bits (size-weighted across
tensors) without replacement; the space is index arithmetic over blocks of bits, so a 100 MB
model's billion eligible bits are never materialised as a list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qtool.errors import QtoolError
from qtool.faults.storage.models import StorageFault
from qtool.faults.storage.targets import Target
from qtool.faults.words import bit_values
from qtool.modelfile.buffers import Buffers


@dataclass(frozen=True)
class BitRef:
    """One bit of an eligible tensor: target index, word index inside the tensor, bit."""

    target: int
    word: int
    bit: int


@dataclass
class BitSpace:
    """All eligible bits as one index range, in blocks.

    A fault model that does not read values (flip) gives tensor t one block of
    `words * len(positions)` consecutive indices, word-major. One that does (set/reset)
    gives a block per (tensor, bit position) holding the words it may hit there.
    """

    targets: list[Target]
    fault: StorageFault
    block_target: np.ndarray  # per block: target index
    block_bit: np.ndarray  # per block: bit position (-1: all positions of the tensor)
    block_start: np.ndarray  # cumulative start index of each block
    total: int

    def per_target(self) -> np.ndarray:
        """Eligible bits per target."""
        sizes = np.diff(np.append(self.block_start, self.total))
        return np.bincount(self.block_target, weights=sizes, minlength=len(self.targets))

    def locate(self, indices: np.ndarray, buffers: Buffers) -> list[BitRef]:
        """The bits at sorted distinct indices of the space, ordered by (target, word, bit)."""
        block = np.searchsorted(self.block_start, indices, side="right") - 1
        refs: list[BitRef] = []
        for b in np.unique(block):
            local = indices[block == b] - self.block_start[b]
            ti = int(self.block_target[b])
            t = self.targets[ti]
            p = int(self.block_bit[b])
            if p < 0:
                npos = len(t.positions)
                refs += [BitRef(ti, j // npos, t.positions[j % npos]) for j in local.tolist()]
            else:
                match = np.flatnonzero(self.fault.eligible(bit_values(t.view(buffers), p)))
                refs += [BitRef(ti, int(match[j]), p) for j in local.tolist()]
        refs.sort(key=lambda r: (r.target, r.word, r.bit))
        return refs


def bit_space(targets: list[Target], buffers: Buffers, fault: StorageFault) -> BitSpace:
    """Index arithmetic over the concatenated eligible bits of all targets."""
    b_target, b_bit, sizes = [], [], []
    for i, t in enumerate(targets):
        if not fault.reads_values:
            b_target.append(i)
            b_bit.append(-1)
            sizes.append(t.words * len(t.positions))
            continue
        words = t.view(buffers)
        for p in t.positions:
            count = int(np.count_nonzero(fault.eligible(bit_values(words, p))))
            if count:
                b_target.append(i)
                b_bit.append(p)
                sizes.append(count)
    sizes_arr = np.array(sizes, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes_arr)[:-1]]).astype(np.int64)
    return BitSpace(
        targets,
        fault,
        np.array(b_target, dtype=np.int64),
        np.array(b_bit, dtype=np.int64),
        starts,
        int(sizes_arr.sum()) if len(sizes_arr) else 0,
    )


def sample_indices(rng: np.random.Generator, total: int, n: int) -> np.ndarray:
    """n distinct integers uniform in [0, total), sorted; O(n) memory for a sparse draw."""
    if n > total:
        raise QtoolError(f"cannot hit {n} distinct bits: only {total} are eligible", param="bits")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if 2 * n >= total:
        return np.sort(rng.permutation(total)[:n]).astype(np.int64)
    chosen = np.unique(rng.integers(0, total, size=n, dtype=np.int64))
    while len(chosen) < n:
        extra = rng.integers(0, total, size=n - len(chosen), dtype=np.int64)
        chosen = np.unique(np.concatenate([chosen, extra]))
    return chosen
