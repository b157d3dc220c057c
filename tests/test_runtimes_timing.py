"""Latency timing: summaries and histograms of known samples, the bootstrap ratio, and the
seeded, recorded interleaving of contenders."""

from __future__ import annotations

import numpy as np
import pytest

from qtool.runtimes.timing import (
    Contender,
    bootstrap_median_ratio,
    latency_histogram,
    latency_stats,
    measure_interleaved,
)


def test_latency_stats_known_samples():
    ns = np.arange(1, 101) * 1_000_000  # 1..100 ms
    s = latency_stats(ns, items_per_call=4)
    assert s.runs == 100 and s.unit == "ms"
    assert s.mean_ms == pytest.approx(50.5)
    assert s.min_ms == 1.0 and s.max_ms == 100.0
    # linear interpolation between closest ranks: rank q * (n - 1)
    assert s.p50_ms == pytest.approx(50.5)
    assert s.p90_ms == pytest.approx(90.1)
    assert s.p99_ms == pytest.approx(99.01)
    assert s.std_ms == pytest.approx(np.sqrt(100 * 101 / 12))  # sample std of 1..n
    assert s.throughput_items_per_s == pytest.approx(4 / 0.0505)


def test_latency_stats_single_sample_and_empty():
    s = latency_stats([2_500_000])
    assert s.p50_ms == s.p99_ms == s.min_ms == s.max_ms == 2.5 and s.std_ms == 0.0
    with pytest.raises(ValueError):
        latency_stats([])


@pytest.mark.parametrize("true_ratio", [0.5, 1.0, 1.7])
def test_bootstrap_interval_contains_true_ratio(true_ratio):
    rng = np.random.default_rng(42)
    base = rng.lognormal(0.0, 0.2, 2000)
    other = true_ratio * rng.lognormal(0.0, 0.2, 2000)
    est = bootstrap_median_ratio(base, other, resamples=1000, seed=3)
    assert est.ci95_low < true_ratio < est.ci95_high
    assert est.ci95_low <= est.ratio <= est.ci95_high
    assert est.ci95_high - est.ci95_low < 0.1 * true_ratio
    assert "paired" in est.method


def test_bootstrap_is_seeded_and_unpaired_for_unequal_lengths():
    rng = np.random.default_rng(0)
    a, b = rng.normal(10, 1, 300), rng.normal(12, 1, 200)
    one = bootstrap_median_ratio(a, b, resamples=500, seed=7)
    two = bootstrap_median_ratio(a, b, resamples=500, seed=7)
    other = bootstrap_median_ratio(a, b, resamples=500, seed=8)
    assert one == two
    assert (one.ci95_low, one.ci95_high) != (other.ci95_low, other.ci95_high)
    assert one.ratio == pytest.approx(np.median(b) / np.median(a))
    assert "independently" in one.method


def test_interleaving_order_is_recorded_and_followed():
    log: list[str] = []
    contenders = [Contender(n, log.append, (n,)) for n in "ABC"]
    raw = measure_interleaved(contenders, runs=40, warmup=3, seed=5)
    measured = log[3 * 3 :]  # after the warm-up rounds
    assert measured == ["ABC"[i] for order in raw.order for i in order]
    assert raw.rounds == len(raw.order) == 40
    assert all(sorted(order) == [0, 1, 2] for order in raw.order)
    assert {order[0] for order in raw.order} == {0, 1, 2}  # nobody is always first
    assert all(len(lat) == 40 for lat in raw.latencies_ns)
    again = measure_interleaved(contenders, runs=40, warmup=3, seed=5)
    assert again.order == raw.order
    assert measure_interleaved(contenders, runs=40, warmup=3, seed=6).order != raw.order


def test_seconds_mode_runs_at_least_min_rounds():
    raw = measure_interleaved([Contender("x", int)], seconds=1e-9, warmup=0, min_rounds=7)
    assert raw.rounds == 7
    raw = measure_interleaved([Contender("x", int)], seconds=0.02, warmup=0, min_rounds=7)
    assert raw.rounds > 7 and raw.wall_s >= 0.019  # stops at the first round past the time


def test_histogram_bins_are_log_spaced_on_a_grid_fixed_to_decades():
    ms = np.array([0.05, 0.051, 0.2, 1.0, 3.3, 9.99])
    hist = latency_histogram((ms * 1e6).astype(np.int64), bins_per_decade=10)
    assert sum(hist.counts) == ms.size and len(hist.edges_ms) == len(hist.counts) + 1
    ratios = np.array(hist.edges_ms[1:]) / np.array(hist.edges_ms[:-1])
    np.testing.assert_allclose(ratios, 10**0.1, rtol=1e-5)
    assert hist.edges_ms[0] == pytest.approx(10 ** (-14 / 10), rel=1e-5)  # just below 0.05
    assert hist.edges_ms[-1] == pytest.approx(10.0, rel=1e-5)
    edges = np.array(hist.edges_ms)
    for value in ms:  # every sample lands in the bin whose edges hold it
        i = int(np.searchsorted(edges, value, side="right")) - 1
        assert hist.counts[i] >= 1
    expected, _ = np.histogram(ms, bins=edges)
    assert hist.counts == expected.tolist()


def test_histograms_of_different_runs_share_the_grid():
    rng = np.random.default_rng(1)
    a = latency_histogram(rng.lognormal(np.log(2e5), 0.3, 500).astype(np.int64))
    b = latency_histogram(rng.lognormal(np.log(4e5), 0.3, 500).astype(np.int64))
    shared = sorted(set(a.edges_ms) & set(b.edges_ms))
    assert len(shared) >= 5  # the same edges, not merely similar ones
    assert a.bins_per_decade == b.bins_per_decade == 20
    one = latency_histogram([1_000_000])
    assert one.counts == [1] and one.edges_ms[0] <= 1.0 < one.edges_ms[1]
    with pytest.raises(ValueError):
        latency_histogram([])


def test_every_arity_is_called_with_its_arguments():
    calls: list[tuple] = []
    contenders = [
        Contender("none", lambda: calls.append(())),
        Contender("one", lambda a: calls.append((a,)), (1,)),
        Contender("two", lambda a, b: calls.append((a, b)), (1, 2)),  # the session.run shape
        Contender("three", lambda a, b, c: calls.append((a, b, c)), (1, 2, 3)),
    ]
    raw = measure_interleaved(contenders, runs=3, warmup=1, seed=0)
    assert sorted(calls) == sorted([(), (1,), (1, 2), (1, 2, 3)] * 4)
    assert [len(lat) for lat in raw.latencies_ns] == [3, 3, 3, 3]
    assert all(t >= 0 for lat in raw.latencies_ns for t in lat)
