"""Bootstrap intervals over samples and seeds; the paired verdict against the floor."""

from __future__ import annotations

import numpy as np

from qtool.attacks.stats import beats_floor, difference_interval, rate_interval


def test_rate_interval_brackets_the_pooled_rate_and_is_seeded():
    rng = np.random.default_rng(0)
    seeds = [rng.random(200) < 0.3 for _ in range(3)]
    a = rate_interval(seeds, seed=1)
    assert a.low <= a.value <= a.high and 0.2 < a.value < 0.4
    assert a == rate_interval(seeds, seed=1)
    assert 0.02 < a.high - a.low < 0.2


def test_between_seed_spread_widens_the_interval():
    same = [np.r_[np.ones(50), np.zeros(50)]] * 4
    spread = [np.ones(100), np.zeros(100), np.ones(100), np.zeros(100)]
    assert (rate_interval(spread).high - rate_interval(spread).low) > (
        rate_interval(same).high - rate_interval(same).low
    )


def test_paired_difference_decides_the_verdict():
    rng = np.random.default_rng(2)
    floor = [rng.random(150) < 0.1 for _ in range(2)]
    strong = [f | (rng.random(150) < 0.5) for f in floor]
    assert beats_floor(difference_interval(strong, floor))
    assert not beats_floor(difference_interval(floor, floor))
    empty = difference_interval([np.zeros(0)], [np.zeros(0)])
    assert not beats_floor(empty)
