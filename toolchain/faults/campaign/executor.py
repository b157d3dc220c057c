"""Where campaign trials run: the seam between "which trials" and "on what".

An executor maps trial tasks to results, in any order (every trial is seeded by its own
task, so results never depend on where or in which order they ran). Two ship here: in this
process, and a pool of spawned worker processes that each rebuild the prepared models from
the `CampaignJob` (paths and settings, no bytes). A distributed executor (e.g. Dask) is a
third function with the same signature.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from qtool.data.datasets import load_dataset
from qtool.faults.campaign.stats import TrialResult
from qtool.faults.campaign.trials import PreparedModel, prepare_model, run_trial

if TYPE_CHECKING:
    from qtool.faults.campaign.run import CampaignPlan


@dataclass(frozen=True)
class TrialTask:
    model: int  # index into the campaign's models
    bits: int
    trial: int


@dataclass(frozen=True)
class CampaignJob:
    """What any worker needs to rebuild the campaign's prepared models (picklable)."""

    paths: tuple[str, ...]
    data_spec: str
    plan: CampaignPlan


# (job, models prepared in this process, labels, tasks) -> results in any order
Executor = Callable[
    [CampaignJob, list[PreparedModel], np.ndarray, list[TrialTask]], Iterator[TrialResult]
]


def in_process(
    job: CampaignJob, models: list[PreparedModel], y: np.ndarray, tasks: list[TrialTask]
) -> Iterator[TrialResult]:
    """Run the trials here, one after another, on the models already prepared."""
    for t in tasks:
        yield run_trial(models[t.model], t.model, y, t.bits, t.trial, job.plan.seed)


def process_pool(workers: int) -> Executor:
    """Run the trials in `workers` spawned processes, each preparing the models once."""

    def execute(
        job: CampaignJob, models: list[PreparedModel], y: np.ndarray, tasks: list[TrialTask]
    ) -> Iterator[TrialResult]:
        ctx = mp.get_context("spawn")
        chunks = max(1, len(tasks) // (workers * 16))
        with ctx.Pool(workers, initializer=_init_worker, initargs=(job,)) as pool:
            yield from pool.imap_unordered(_work, tasks, chunksize=chunks)

    return execute


def default_executor(workers: int) -> Executor:
    return in_process if workers == 1 else process_pool(workers)


_WORKER: dict = {}


def _init_worker(job: CampaignJob) -> None:
    data = load_dataset(job.data_spec, job.plan.split)
    _WORKER["job"] = job
    _WORKER["y"] = data.y
    options = job.plan.prepare_options()
    _WORKER["models"] = [prepare_model(p, data, job.plan, **options) for p in job.paths]


def _work(task: TrialTask) -> TrialResult:
    job: CampaignJob = _WORKER["job"]
    return run_trial(
        _WORKER["models"][task.model],
        task.model,
        _WORKER["y"],
        task.bits,
        task.trial,
        job.plan.seed,
    )
