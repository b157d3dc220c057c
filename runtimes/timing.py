"""Latency measured the same way for every model: interleaved rounds, perf_counter_ns, ratios.

When several sessions are compared, one round runs each of them once, in an order drawn from a
seeded generator (and recorded), so slow drift of the machine (other processes, frequency,
thermals) hits every contender alike. Only the call itself sits between the two
`time.perf_counter_ns()` reads; inputs are prepared before measuring and nothing else (no CPU
clock reads, no bookkeeping) runs inside the timed window. CPU time and energy are measured
separately, over windows of back-to-back calls (qtool.runtimes.energy).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

PERCENTILE_METHOD = "linear"  # numpy's default: interpolate between closest ranks
TIMER = "time.perf_counter_ns around the inference call only"
BINS_PER_DECADE = 20  # histogram bins 12 % wide: finer than run-to-run noise of a latency


@dataclass
class LatencyStats:
    """Latency summary of one contender; every time in milliseconds."""

    runs: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    items_per_call: int
    throughput_items_per_s: float
    unit: str = "ms"
    std_kind: str = "sample standard deviation (ddof=1)"
    percentile_method: str = PERCENTILE_METHOD
    throughput_definition: str = "items_per_call / mean latency (time inside the timed calls)"


def latency_stats(samples_ns: Sequence[int] | np.ndarray, items_per_call: int = 1) -> LatencyStats:
    """Summary statistics of latencies given in nanoseconds."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if ms.size == 0:
        raise ValueError("no latency samples to summarise")
    p50, p90, p99 = np.percentile(ms, [50, 90, 99], method=PERCENTILE_METHOD)
    mean = float(ms.mean())
    return LatencyStats(
        runs=int(ms.size),
        mean_ms=mean,
        std_ms=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        min_ms=float(ms.min()),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        max_ms=float(ms.max()),
        items_per_call=int(items_per_call),
        throughput_items_per_s=float(items_per_call / (mean / 1e3)) if mean > 0 else float("inf"),
    )


@dataclass
class LatencyHistogram:
    """Latency counts in log-spaced bins on one grid fixed to the decades, so histograms of
    different models and runs line up bin for bin; bin i holds edges_ms[i] <= t < edges_ms[i+1].

    Kept instead of every sample: a few hundred bytes whatever the run length."""

    edges_ms: list[float]
    counts: list[int]
    bins_per_decade: int
    grid: str = "edges 10 ** (k / bins_per_decade) ms for integer k"


def latency_histogram(
    samples_ns: Sequence[int] | np.ndarray, bins_per_decade: int = BINS_PER_DECADE
) -> LatencyHistogram:
    """Counts of latencies (nanoseconds) per log-spaced bin, spanning just the samples."""
    ms = np.maximum(np.asarray(samples_ns, dtype=np.float64) / 1e6, 1e-6)  # >= 1 ns
    if ms.size == 0:
        raise ValueError("no latency samples to summarise")
    k = np.floor(np.log10(ms) * bins_per_decade).astype(np.int64)
    lo, hi = int(k.min()), int(k.max())
    counts = np.bincount(k - lo, minlength=hi - lo + 1)
    edges = [float(f"{10 ** (i / bins_per_decade):.6g}") for i in range(lo, hi + 2)]
    return LatencyHistogram(edges, counts.tolist(), int(bins_per_decade))


@dataclass
class RatioEstimate:
    """median(other) / median(baseline) with a seeded bootstrap 95 % interval."""

    ratio: float
    ci95_low: float
    ci95_high: float
    resamples: int
    seed: int
    method: str


def bootstrap_median_ratio(
    baseline: Sequence[float] | np.ndarray,
    other: Sequence[float] | np.ndarray,
    resamples: int = 2000,
    seed: int = 0,
    paired: bool | None = None,
) -> RatioEstimate:
    """Median-latency ratio other/baseline and its percentile-bootstrap 95 % interval.

    Interleaved samples are paired by round (sample i of each was taken in the same round), so
    by default equal-length samples are resampled by round, which keeps the drift they share;
    samples of unequal length are resampled independently.
    """
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(other, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("both samples need at least one value")
    if paired is None:
        paired = a.size == b.size
    if paired and a.size != b.size:
        raise ValueError("paired resampling needs samples of equal length")
    ratio = float(np.median(b) / np.median(a))
    rng = np.random.default_rng(seed)
    ratios = np.empty(resamples)
    chunk = max(1, 2_000_000 // max(a.size, b.size))  # bound memory: rows of indices per chunk
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        ia = rng.integers(0, a.size, size=(rows, a.size))
        ib = ia if paired else rng.integers(0, b.size, size=(rows, b.size))
        ratios[start : start + rows] = np.median(b[ib], axis=1) / np.median(a[ia], axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    method = (
        "percentile bootstrap, resampling rounds (paired)"
        if paired
        else "percentile bootstrap, samples resampled independently"
    )
    return RatioEstimate(ratio, float(low), float(high), int(resamples), int(seed), method)


@dataclass
class Contender:
    """One thing to time: `call(*args)` runs one inference with everything prepared beforehand.

    Keeping the function and its arguments apart (rather than a closure or partial) lets the
    timed window hold the same single call a hand-written loop would make: two arguments (the
    `session.run(names, feeds)` shape) are passed as `call(a, b)`, which CPython specialises,
    not `call(*args)`, measured ~2 % slower on a 5 us model (benchmarks/bench_overhead.py)."""

    name: str
    call: Callable[..., object]
    args: tuple = ()
    items_per_call: int = 1

    def __call__(self) -> object:
        return self.call(*self.args)


@dataclass
class InterleavedRun:
    """Raw outcome of an interleaved measurement; index i everywhere is contender i."""

    names: list[str]
    latencies_ns: list[list[int]]
    order: list[list[int]]
    warmup_rounds: int
    rounds: int
    wall_s: float
    seed: int
    order_method: str = "seeded random permutation per round (numpy default_rng)"
    timer: str = TIMER
    extra: dict = field(default_factory=dict)


def round_orders(n: int, seed: int) -> Iterator[list[int]]:
    """The order of contenders in each round, warm-up rounds first: a seeded permutation per
    round (numpy default_rng). `measure_interleaved` draws from this stream, so the order of a
    run is recorded by its seed: `list(islice(round_orders(n, seed), warmup, warmup + rounds))`
    gives it again."""
    rng = np.random.default_rng(seed)
    while True:
        yield [0] if n == 1 else rng.permutation(n).tolist()


def measure_interleaved(
    contenders: Sequence[Contender],
    runs: int | None = None,
    seconds: float | None = None,
    warmup: int = 10,
    seed: int = 0,
    min_rounds: int = 5,
    on_round: Callable[[int], None] | None = None,
) -> InterleavedRun:
    """Time each contender round by round (A B, B A, ...), `runs` rounds or for `seconds`.

    With `seconds`, rounds continue until that much wall time has passed and at least
    `min_rounds` were done. Warm-up rounds are interleaved the same way and discarded.
    """
    _check_budget(contenders, runs, seconds)
    orders_of = round_orders(len(contenders), seed)
    fns = [c.call for c in contenders]
    argss = [c.args for c in contenders]
    for _ in range(warmup):
        for i in next(orders_of):
            fns[i](*argss[i])

    lat: list[list[int]] = [[] for _ in contenders]
    orders: list[list[int]] = []
    perf = time.perf_counter_ns
    deadline = None if seconds is None else perf() + int(seconds * 1e9)
    start = perf()
    done = 0
    while True:
        if runs is not None and done >= runs:
            break
        if deadline is not None and runs is None and done >= min_rounds and perf() >= deadline:
            break
        order = next(orders_of)
        for i in order:
            fn, args = fns[i], argss[i]
            if len(args) == 2:  # session.run(names, feeds): the plain call a user writes
                a, b = args
                t0 = perf()
                fn(a, b)
                t1 = perf()
            else:  # fn(*args) is a slower, unspecialised call: only for other arities
                t0 = perf()
                fn(*args)
                t1 = perf()
            lat[i].append(t1 - t0)
        orders.append(order)
        done += 1
        if on_round is not None:
            on_round(done)
    wall = (perf() - start) / 1e9
    return InterleavedRun(
        names=[c.name for c in contenders],
        latencies_ns=lat,
        order=orders,
        warmup_rounds=int(warmup),
        rounds=done,
        wall_s=wall,
        seed=int(seed),
    )


def _check_budget(contenders: Sequence[Contender], runs: int | None, seconds: float | None):
    if not contenders:
        raise ValueError("nothing to measure")
    if runs is None and seconds is None:
        raise ValueError("give runs or seconds")
    if runs is not None and runs < 1:
        raise ValueError("runs must be >= 1")
