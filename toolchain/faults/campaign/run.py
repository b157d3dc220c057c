"""Fault campaigns: accuracy of a model as more and more stored bits are hit.

For each model, budget (number of bits) and trial, `trials.run_trial` hits that many seeded
bits and scores the model; `stats.budget_stats` summarises the trials of each budget. Trials
run through an executor (`executor.py`): in this process, in worker processes or on a Dask
cluster. `trials="auto"` sizes each budget by rounds until a rule of `sizing.py` stops it.

Trials are handed out trial-major (trial 0 of every model and budget, then trial 1, ...), so
a campaign stopped early by its time budget or by Ctrl-C / SIGTERM has about as many
trials in every budget; its result is then marked partial (with the reason) and summarises
the trials done. An interruption re-raises KeyboardInterrupt carrying that result as
`.campaign_result`, so the caller can write it before exiting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from qtool import limits
from qtool.data.datasets import load_dataset
from qtool.errors import QtoolError
from qtool.faults.campaign.executor import (
    CampaignJob,
    Executor,
    TrialTask,
    close_executor,
    default_executor,
    prepare_job_models,
)
from qtool.faults.campaign.sizing import BudgetSizing, sized_trials
from qtool.faults.campaign.stats import (
    CI_METHOD,
    BudgetStats,
    TrialResult,
    budget_stats,
    chance_accuracy,
)
from qtool.faults.campaign.trials import DEFAULT_OPT_LEVEL, PreparedModel
from qtool.faults.incremental import DEFAULT_CACHE_MB, EvaluationMode
from qtool.faults.storage.selection import Selection
from qtool.report import progress
from qtool.runtimes.providers import DEFAULT_PRECISION, compared_specs
from qtool.stopping import Deadline, OutOfTime, signal_name, stop_on_signals

DEFAULT_MAX_TRIALS = 10_000  # trials="auto": the most one budget may take (--max-trials)


@dataclass(frozen=True, kw_only=True)
class CampaignPlan(Selection):
    """Budgets (bits per trial), trials per budget, seed, where trials run and on which
    execution providers (each model runs every trial on each, with the same flips), on top
    of the selection of eligible bits."""

    budgets: tuple[int, ...] = (1,)
    trials: int | str = 10  # or "auto": sized per budget by margin and confidence
    seed: int = 0
    split: str | None = None
    workers: int = 1
    opt_level: str = DEFAULT_OPT_LEVEL
    providers: tuple[str, ...] = ("cpu",)  # every model runs its trials on each
    precision: str = DEFAULT_PRECISION
    margin: float | None = None  # trials="auto": half-width of the mean accuracy (fraction)
    confidence: float = 0.95
    max_trials: int = DEFAULT_MAX_TRIALS  # trials="auto": per budget, whatever the rules say
    incremental: bool = True  # re-run only the layers after a fault (bit-identical)
    cache_mb: float = DEFAULT_CACHE_MB  # per process; beyond it trials run the whole model

    def __post_init__(self) -> None:
        super().__post_init__()
        specs = compared_specs(list(self.providers) or ["cpu"], param="providers")
        for spec in specs:
            spec.check_precision(self.precision)
        object.__setattr__(self, "providers", tuple(s.name for s in specs))
        budgets = tuple(sorted({int(b) for b in self.budgets}))
        if not budgets or budgets[0] < 0:
            raise QtoolError(f"{list(self.budgets)}: give bit counts of 0 or more", param="bits")
        object.__setattr__(self, "budgets", budgets)
        if self.auto:
            self._check_auto()
        elif not isinstance(self.trials, int) or self.trials < 1:
            raise QtoolError(f"{self.trials} trials: give at least 1, or auto", param="trials")
        if self.workers < 1:
            raise QtoolError(f"{self.workers} workers: give at least 1", param="workers")
        if not self.auto:
            limits.check("trials", self.trials, "trials per budget", param="trials")
        limits.check("threads", self.workers, "worker processes", param="workers")
        if self.cache_mb < 0:
            raise QtoolError(f"{self.cache_mb} MB: give a size of 0 or more", param="cache_mb")

    def prepare_options(self) -> dict:
        """How each process prepares the models (`prepare_model` keywords)."""
        return {
            "opt_level": self.opt_level,
            "incremental": self.incremental,
            "cache_mb": self.cache_mb,
        }

    @property
    def auto(self) -> bool:
        return self.trials == "auto"

    def _check_auto(self) -> None:
        if self.margin is None or not 0 < self.margin <= 0.5:
            raise QtoolError(
                "trials auto needs a margin between 0 and 0.5 (accuracy as a fraction)",
                param="margin",
            )
        if not 0.5 <= self.confidence < 1:
            raise QtoolError(
                f"{self.confidence}: give a confidence between 0.5 and 1", param="confidence"
            )
        if self.max_trials < 1:
            raise QtoolError(f"{self.max_trials}: give at least 1 trial", param="max_trials")
        limits.check("trials", self.max_trials, "trials per budget", param="max_trials")


@dataclass
class ModelInfo:
    path: str
    provider: str  # the execution provider every trial of this entry ran on
    precision: str
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
    trials: int | str  # "auto": per budget in `stats` and `sizing`
    budgets: list[int]
    workers: int  # where trials ran: processes or Dask worker threads
    cluster: str | None  # the Dask cluster (local:N or an address); None without one
    opt_level: str
    providers: list[str]
    campaign_seconds: float
    trials_per_s: float
    ci_method: str = CI_METHOD
    sizing: dict | None = None  # trials="auto": rules, margin, confidence, per-budget records
    models: list[ModelInfo] = field(default_factory=list)
    stats: list[BudgetStats] = field(default_factory=list)
    trial_results: list[TrialResult] = field(default_factory=list)
    partial: bool = False  # stopped early (time budget, signal): fewer trials than planned
    stopped: str | None = None  # why


def run_campaign(
    models: list[Path | str],
    data_spec: str,
    plan: CampaignPlan,
    *,
    show_progress: bool = True,
    executor: Executor | None = None,
    time_budget: float | None = None,
) -> CampaignResult:
    """Accuracy vs number of faulted bits for each model; see the module docstring.
    `time_budget` (seconds, counted from the first trial) stops the trials early."""
    if not models:
        raise QtoolError("give at least one model", param="models")
    data = load_dataset(data_spec, plan.split)
    if data.y is None:
        raise QtoolError(
            f"data set {data_spec} has no labels; campaigns score accuracy", param="data_spec"
        )
    job = CampaignJob(tuple(str(p) for p in models), data_spec, plan)
    prepared = prepare_job_models(job, data)
    for p in prepared:
        if plan.budgets[-1] > p.space.total:
            raise QtoolError(
                f"{plan.budgets[-1]} is more than the {p.space.total} eligible bits of "
                f"{p.path}; lower the budget or widen the selection",
                param="bits",
            )
    own = executor is None
    execute = executor or default_executor(plan.workers)
    start = time.perf_counter()
    results: list[TrialResult] = []  # filled as trials complete, kept when stopped early
    sizing, stopped = None, None
    deadline = Deadline(time_budget)
    try:
        with stop_on_signals():
            sizing = _run_trials(job, prepared, data.y, plan, execute, show_progress,
                                 results, deadline)  # fmt: skip
    except OutOfTime as exc:
        stopped = f"{exc} after {len(results)} trials"
    except KeyboardInterrupt as exc:
        why = f"interrupted ({signal_name(exc)}) after {len(results)} trials"
        exc.campaign_result = _finish(data, plan, prepared, results, start, execute, why)
        raise
    finally:
        if own:
            close_executor(execute)
    result = _finish(data, plan, prepared, results, start, execute, stopped)
    if sizing is not None:
        result.sizing = _sizing_record(plan, sizing)
    return result


def _finish(data, plan, prepared, results, start, execute, stopped: str | None):
    """The result of the trials done (partial when `stopped` says why)."""
    seconds = time.perf_counter() - start
    results = sorted(results, key=lambda r: (r.model, r.bits, r.trial))
    result = _result(data, plan, prepared, results, seconds)
    result.workers = getattr(execute, "workers", plan.workers)
    result.cluster = getattr(execute, "cluster", None)
    result.partial, result.stopped = stopped is not None, stopped
    return result


def _run_trials(job, prepared, y, plan, execute, show_progress, results, deadline: Deadline):
    """Every trial through the executor, feeding the progress bar and `results` as each one
    completes; OutOfTime once `deadline` passes. Returns the sizing records (trials=auto)."""
    with progress() as bar:
        task_id = bar.add_task("flip trials", total=0, status="")
        bar.update(task_id, visible=show_progress)

        def run(tasks: list[TrialTask]) -> list[TrialResult]:
            bar.update(task_id, total=len(results) + len(tasks))
            out = []
            for r in execute(job, prepared, y, tasks):
                out.append(r)
                results.append(r)
                model = prepared[r.model]
                status = f"{Path(model.path).name} on {model.provider}, {r.bits} bits"
                bar.update(task_id, advance=1, status=status)
                deadline.check()
            return out

        if not plan.auto:
            tasks = [
                TrialTask(m, b, t) for t in range(int(plan.trials))
                for m in range(len(prepared)) for b in plan.budgets
            ]  # fmt: skip
            run(tasks)
            return None
        assert plan.margin is not None
        _, sizing = sized_trials(
            [(_entry(p), p.space.total) for p in prepared],
            plan.budgets,
            margin=plan.margin,
            confidence=plan.confidence,
            max_trials=plan.max_trials,
            seed=plan.seed,
            run=lambda batch: run(
                [TrialTask(m, b, t) for m, b, lo, hi in batch for t in range(lo, hi)]
            ),
        )
        return sizing


def _entry(p: PreparedModel) -> str:
    """A model entry's name in the sizing records: its path, and the provider when not CPU."""
    return p.path if p.provider == "cpu" else f"{p.path} on {p.provider}"


def _sizing_record(plan: CampaignPlan, sizing: list[BudgetSizing]) -> dict:
    return {
        "rules": "leveugle: n = N / (1 + e^2 (N-1) / (t^2 p (1-p))), p = 0.5 (Leveugle et al., "
        "DATE 2009); bootstrap: half-width of the percentile bootstrap interval of the mean "
        "accuracy <= margin; limit: max_trials",
        "margin": plan.margin,
        "confidence": plan.confidence,
        "max_trials": plan.max_trials,
        "budgets": sizing,
    }


def _result(data, plan: CampaignPlan, prepared: list[PreparedModel], results, seconds: float):
    chance = chance_accuracy(data.y)
    groups = {(m, b): [] for m in range(len(prepared)) for b in plan.budgets}
    for r in results:
        groups[r.model, r.bits].append(r)
    stats = [  # a campaign stopped early may have budgets without trials
        budget_stats(prepared[m].path, b, group, chance, plan.seed, provider=prepared[m].provider)
        for (m, b), group in groups.items()
        if group
    ]
    infos = [
        ModelInfo(
            path=p.path,
            provider=p.provider,
            precision=p.precision,
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
        cluster=None,
        opt_level=plan.opt_level,
        providers=list(plan.providers),
        campaign_seconds=seconds,
        trials_per_s=len(results) / seconds if seconds > 0 else 0.0,
        models=infos,
        stats=stats,
        trial_results=results,
    )
