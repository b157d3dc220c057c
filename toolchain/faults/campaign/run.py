"""Fault campaigns: accuracy of a model as more and more stored bits are hit.

For each model, budget (number of bits) and trial, `trials.run_trial` hits that many seeded
bits and scores the model; `stats.budget_stats` summarises the trials of each budget. Trials
run through an executor (`executor.py`): in this process or in worker processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from qtool.data.datasets import load_dataset
from qtool.errors import QtoolError
from qtool.faults.campaign.executor import CampaignJob, Executor, TrialTask, default_executor
from qtool.faults.campaign.stats import (
    CI_METHOD,
    BudgetStats,
    TrialResult,
    budget_stats,
    chance_accuracy,
)
from qtool.faults.campaign.trials import DEFAULT_OPT_LEVEL, PreparedModel, prepare_model
from qtool.faults.incremental import DEFAULT_CACHE_MB, EvaluationMode
from qtool.faults.storage.selection import Selection
from qtool.report import progress


@dataclass(frozen=True, kw_only=True)
class CampaignPlan(Selection):
    """Budgets (bits per trial), trials per budget, seed and where trials run, on top of the
    selection of eligible bits."""

    budgets: tuple[int, ...] = (1,)
    trials: int = 10
    seed: int = 0
    split: str | None = None
    workers: int = 1
    opt_level: str = DEFAULT_OPT_LEVEL
    incremental: bool = True  # re-run only the layers after a fault (bit-identical)
    cache_mb: float = DEFAULT_CACHE_MB  # per process; beyond it trials run the whole model

    def __post_init__(self) -> None:
        super().__post_init__()
        budgets = tuple(sorted({int(b) for b in self.budgets}))
        if not budgets or budgets[0] < 0:
            raise QtoolError(f"{list(self.budgets)}: give bit counts of 0 or more", param="bits")
        object.__setattr__(self, "budgets", budgets)
        if self.trials < 1:
            raise QtoolError(f"{self.trials} trials: give at least 1", param="trials")
        if self.workers < 1:
            raise QtoolError(f"{self.workers} workers: give at least 1", param="workers")
        if self.cache_mb < 0:
            raise QtoolError(f"{self.cache_mb} MB: give a size of 0 or more", param="cache_mb")

    def prepare_options(self) -> dict:
        """How each process prepares the models (`prepare_model` keywords)."""
        return {
            "opt_level": self.opt_level,
            "incremental": self.incremental,
            "cache_mb": self.cache_mb,
        }


@dataclass
class ModelInfo:
    path: str
    sha256: str
    clean_accuracy: float
    eligible_bits: int
    eligible_tensors: int
    converted_to_raw_data: list[str]
    evaluation: EvaluationMode  # incremental or full, and why


@dataclass
class CampaignResult:
    data: str
    split: str
    samples: int
    chance: float  # accuracy of always answering the most common class
    seed: int
    targets: str
    positions: str
    fault: str
    layers: str | None
    trials: int
    budgets: list[int]
    workers: int
    opt_level: str
    seconds: float
    trials_per_second: float
    ci_method: str = CI_METHOD
    models: list[ModelInfo] = field(default_factory=list)
    stats: list[BudgetStats] = field(default_factory=list)
    trial_results: list[TrialResult] = field(default_factory=list)


def run_campaign(
    models: list[Path | str],
    data_spec: str,
    plan: CampaignPlan,
    *,
    show_progress: bool = True,
    executor: Executor | None = None,
) -> CampaignResult:
    """Accuracy vs number of faulted bits for each model; see the module docstring."""
    if not models:
        raise QtoolError("give at least one model", param="models")
    data = load_dataset(data_spec, plan.split)
    if data.y is None:
        raise QtoolError(
            f"data set {data_spec} has no labels; campaigns score accuracy", param="data_spec"
        )
    job = CampaignJob(tuple(str(p) for p in models), data_spec, plan)
    prepared = [prepare_model(p, data, plan, **plan.prepare_options()) for p in job.paths]
    for p in prepared:
        if plan.budgets[-1] > p.space.total:
            raise QtoolError(
                f"{plan.budgets[-1]} is more than the {p.space.total} eligible bits of "
                f"{p.path}; lower the budget or widen the selection",
                param="bits",
            )
    tasks = [
        TrialTask(m, b, t) for m in range(len(prepared)) for b in plan.budgets
        for t in range(plan.trials)
    ]  # fmt: skip
    execute = executor or default_executor(plan.workers)
    results: list[TrialResult] = []
    start = time.perf_counter()
    with progress() as bar:
        task_id = bar.add_task("flip trials", total=len(tasks), status="")
        bar.update(task_id, visible=show_progress)
        for r in execute(job, prepared, data.y, tasks):
            results.append(r)
            bar.update(task_id, advance=1, status=f"{Path(job.paths[r.model]).name} {r.bits} bits")
    seconds = time.perf_counter() - start
    results.sort(key=lambda r: (r.model, r.bits, r.trial))
    return _result(data, plan, prepared, results, seconds)


def _result(data, plan: CampaignPlan, prepared: list[PreparedModel], results, seconds: float):
    chance = chance_accuracy(data.y)
    stats = [
        budget_stats(
            p.path, b, [r for r in results if r.model == m and r.bits == b], chance, plan.seed
        )
        for m, p in enumerate(prepared)
        for b in plan.budgets
    ]
    infos = [
        ModelInfo(
            path=p.path,
            sha256=p.sha256,
            clean_accuracy=float((p.clean.pred == data.y).mean()),
            eligible_bits=p.space.total,
            eligible_tensors=len(p.targets),
            converted_to_raw_data=p.converted,
            evaluation=p.evaluation,
        )
        for p in prepared
    ]
    return CampaignResult(
        data=data.spec,
        split=data.split,
        samples=len(data.y),
        chance=chance,
        seed=plan.seed,
        targets=plan.targets_text,
        positions=plan.positions_text,
        fault=plan.fault,
        layers=plan.layers,
        trials=plan.trials,
        budgets=list(plan.budgets),
        workers=plan.workers,
        opt_level=plan.opt_level,
        seconds=seconds,
        trials_per_second=len(results) / seconds if seconds > 0 else 0.0,
        models=infos,
        stats=stats,
        trial_results=results,
    )
