"""The gradient-free searcher: a loss oracle in ONNX Runtime, used when the graph cannot be
replicated in torch (an op outside the replica, QOperator models) or torch is missing.

Candidate bits are the high-order bits (int8 MSB, FP32 exponent MSB and sign) of the
largest-|w| elements and of a seeded random sample of elements of each layer; the one with
the highest attack loss wins.
"""

from __future__ import annotations

import numpy as np

from qtool.errors import WorkFailed
from qtool.faults.search.attacked import SearchModel
from qtool.faults.search.values import FLOAT, INT8, UINT8
from qtool.stopping import Deadline

ORACLE_BITS = {INT8: (7, 6), UINT8: (7, 6), FLOAT: (30, 31)}  # MSB / exponent-MSB first


def oracle_candidates(
    model: SearchModel, rng: np.random.Generator, elements: int
) -> list[tuple[int, int, int]]:
    """High-order bits of the largest-|w| elements and of random elements of each layer."""
    out = []
    for i, t in enumerate(model.targets):
        with np.errstate(invalid="ignore", over="ignore"):  # flipped words may be NaN/Inf
            values = model.words(i).astype(np.float64)
        mags = np.nan_to_num(np.abs(values), nan=-1.0, posinf=-1.0)
        order = np.argsort(-mags, kind="stable")
        chosen = list(order[:elements])
        if len(values) > elements:
            chosen += list(rng.choice(len(values), size=min(elements, len(values)), replace=False))
        for w in dict.fromkeys(int(c) for c in chosen):
            for b in ORACLE_BITS[t.loc.data_type]:
                if (i, w, b) not in model.flipped:
                    out.append((i, w, b))
    return out


def oracle_step(
    model: SearchModel, rng: np.random.Generator, elements: int, deadline: Deadline | None = None
) -> tuple[int, int, int, float, int]:
    """(target, word, bit, ORT attack loss after the flip, candidates measured)."""
    cands = oracle_candidates(model, rng, elements)
    if not cands:
        raise WorkFailed("the oracle search ran out of candidate bits")
    losses = [loss for loss, _ in model.candidate_losses(cands, "ce", deadline)]
    best = int(np.argmax(losses))  # the first of equal losses, as candidates are ordered
    i, w, b = cands[best]
    return i, w, b, losses[best], len(cands)
