"""How many trials a budget needs: `--trials auto --margin E --confidence C`.

Two stopping rules, checked after each round of trials of a (model, budget):

- **leveugle**: the sample size of statistical fault injection (Leveugle et al., "Statistical
  fault injection: quantified error and confidence", DATE 2009),
  n = N / (1 + e^2 (N - 1) / (t^2 p (1 - p))), with N the population of fault configurations
  (C(eligible bits, budget) distinct bit sets), e the margin, t the two-sided normal quantile
  of the confidence and p = 0.5, the worst case. A trial's accuracy lies in [0, 1], so its
  variance is at most 1/4 = p (1 - p) at p = 0.5: n trials bound the margin of the mean
  accuracy as they bound a proportion's. It is a ceiling, reached only when the data do not
  stop the budget earlier.
- **bootstrap**: the percentile bootstrap interval of the mean accuracy at confidence C (the
  campaign's own bootstrap, same seed) has a half-width of at most E.

The formula is checked first (a budget whose n is reached stops as `leveugle`, even if the
interval is also narrow enough); a budget that meets neither by `max_trials` stops there
(rule `limit`). Rounds are fixed
(32, 48, 72, ... trials, x1.5, capped), never sized by the number of workers, so the trials
run, and the results, are the same on any executor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from qtool.faults.campaign.stats import TrialResult, bootstrap_ci, bootstrap_rng

FIRST_ROUND = 32  # trials before the bootstrap may stop a budget (>= 30 for the percentile CI)
GROWTH = 1.5
WORST_P = 0.5


def normal_quantile(confidence: float) -> float:
    """t of a two-sided interval: 1.96 for 95 %, 2.576 for 99 %."""
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def leveugle_trials(population: int, margin: float, confidence: float, p: float = WORST_P) -> int:
    """Leveugle et al.'s n for a population of N fault configurations (rounded up)."""
    t = normal_quantile(confidence)
    limit = t * t * p * (1.0 - p) / (margin * margin)  # n for N -> infinity
    if population.bit_length() > 52:  # exact N no longer changes n by a trial
        return max(1, math.ceil(limit - 1e-9))
    n = population / (1.0 + margin * margin * (population - 1) / (t * t * p * (1.0 - p)))
    return max(1, min(population, math.ceil(n - 1e-9)))


def population(eligible_bits: int, budget: int) -> int:
    """Distinct sets of `budget` bits among the eligible ones."""
    return math.comb(eligible_bits, budget)


def rounds(cap: int) -> list[int]:
    """Cumulative trial counts at which the rules are checked: 32, 48, 72, ... up to cap."""
    out, n = [], FIRST_ROUND
    while n < cap:
        out.append(n)
        n = math.ceil(n * GROWTH)
    return [*out, cap]


def halfwidth(results: list[TrialResult], seed: int, bits: int, confidence: float) -> float:
    acc = np.array([r.accuracy for r in results], dtype=np.float64)
    low, high = bootstrap_ci(acc, bootstrap_rng(seed, bits), confidence)
    return (high - low) / 2.0


@dataclass
class BudgetSizing:
    """How one (model, budget) was sized and which rule stopped it."""

    model: str
    bits: int
    population_log10: float  # log10 of N, the number of distinct bit sets
    leveugle_trials: int
    trials: int
    stopped_by: str  # bootstrap | leveugle | limit
    halfwidth: float  # bootstrap half-width of the mean accuracy at the confidence, at stop


# one batch of (model index, bits, first trial, end trial) ranges -> their results
RunBatch = Callable[[list[tuple[int, int, int, int]]], list[TrialResult]]


def sized_trials(
    models: list[tuple[str, int]],
    budgets: tuple[int, ...],
    *,
    margin: float,
    confidence: float,
    max_trials: int,
    seed: int,
    run: RunBatch,
) -> tuple[list[TrialResult], list[BudgetSizing]]:
    """Run rounds of trials for every (model, budget) until a rule stops each.

    `models` are (name, eligible bits); `run` executes a batch of trial ranges (all open
    budgets of a round together, so the executor's workers stay busy)."""
    done: dict[tuple[int, int], list[TrialResult]] = {}
    plans: dict[tuple[int, int], tuple[list[int], int]] = {}
    sizing: dict[tuple[int, int], BudgetSizing] = {}
    for m, (name, eligible) in enumerate(models):
        for b in budgets:
            n_pop = population(eligible, b)
            formula = leveugle_trials(n_pop, margin, confidence)
            plans[m, b] = (rounds(min(formula, max_trials)), formula)
            done[m, b] = []
            sizing[m, b] = BudgetSizing(
                name, b, math.log10(n_pop) if n_pop else 0.0, formula, 0, "", float("nan")
            )
    open_ = list(plans)
    step = 0
    while open_:
        batch = []
        for key in open_:
            targets, _ = plans[key]
            start = len(done[key])
            batch.append((key[0], key[1], start, targets[step]))
        for r in run(batch):
            done[r.model, r.bits].append(r)
        still = []
        for key in open_:
            targets, formula = plans[key]
            results = sorted(done[key], key=lambda r: r.trial)
            width = halfwidth(results, seed, key[1], confidence)
            s = sizing[key]
            s.trials, s.halfwidth = len(results), width
            if len(results) >= formula:
                s.stopped_by = "leveugle"
            elif width <= margin:
                s.stopped_by = "bootstrap"
            elif len(results) >= max_trials:
                s.stopped_by = "limit"
            elif step + 1 < len(targets):
                still.append(key)
            else:  # pragma: no cover - the last round always meets one of the caps
                s.stopped_by = "limit"
        open_ = still
        step += 1
    results = [r for key in plans for r in done[key]]
    return results, [sizing[k] for k in plans]
