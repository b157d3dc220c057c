"""Bootstrap intervals over samples and seeds, and the verdict against the noise floor.

Success is a 0/1 per attacked sample per seed. The interval resamples seeds with replacement,
then samples within each chosen seed (two-level bootstrap), so both the variation between
attackers' draws and the finite test set show. The comparison with noise is paired: the same
resampled seeds and samples for the attack and the floor, since both ran on the same images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REPS = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


def _resampled_means(groups: list[list[np.ndarray]], reps: int, seed: int) -> np.ndarray:
    """For each rep: one resample of seeds and samples, applied alike to every series.

    `groups[s][i]` is series i (e.g. attack, noise) of seed s, all series of a seed the same
    length. Returns (reps, series) means over the pooled resampled samples.
    """
    rng = np.random.default_rng(seed)
    n_series = len(groups[0])
    out = np.zeros((reps, n_series))
    for r in range(reps):
        chosen = rng.integers(0, len(groups), size=len(groups))
        sums, count = np.zeros(n_series), 0
        for s in chosen:
            n = len(groups[s][0])
            if n == 0:
                continue
            idx = rng.integers(0, n, size=n)
            sums += [series[idx].sum() for series in groups[s]]
            count += n
        out[r] = sums / max(count, 1)
    return out


def _pooled(groups: list[list[np.ndarray]], i: int) -> float:
    total = sum(len(g[i]) for g in groups)
    return float(sum(g[i].sum() for g in groups) / total) if total else 0.0


def rate_interval(per_seed: list[np.ndarray], reps: int = REPS, seed: int = 0) -> Interval:
    """Pooled rate with its bootstrap interval over seeds and samples."""
    groups = [[np.asarray(a, np.float64)] for a in per_seed]
    if not any(len(g[0]) for g in groups):
        return Interval(0.0, 0.0, 0.0)
    means = _resampled_means(groups, reps, seed)[:, 0]
    lo, hi = np.quantile(means, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Interval(_pooled(groups, 0), float(lo), float(hi))


def difference_interval(
    attack: list[np.ndarray], floor: list[np.ndarray], reps: int = REPS, seed: int = 0
) -> Interval:
    """attack rate - floor rate, paired (same resampled seeds and samples for both)."""
    groups = [
        [np.asarray(a, np.float64), np.asarray(b, np.float64)]
        for a, b in zip(attack, floor, strict=True)
    ]
    if not any(len(g[0]) for g in groups):
        return Interval(0.0, 0.0, 0.0)
    means = _resampled_means(groups, reps, seed)
    diff = means[:, 0] - means[:, 1]
    lo, hi = np.quantile(diff, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Interval(_pooled(groups, 0) - _pooled(groups, 1), float(lo), float(hi))


def beats_floor(difference: Interval) -> bool:
    """An attack beats the floor when the whole interval of its excess over noise is above 0."""
    return difference.low > 0
