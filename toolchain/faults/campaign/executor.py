"""Where campaign trials run: the seam between "which trials" and "on what".

An executor maps trial tasks to results, in any order (every trial is seeded by its own
task, so results never depend on where or in which order they ran). It may be called several
times in one campaign (`--trials auto` runs rounds); one that holds resources has `close()`,
and may say where it runs with `workers` and `cluster` attributes. Two ship here: in this
process, and a pool of spawned worker processes that each rebuild the prepared models from
the `CampaignJob` (paths and settings, no bytes). `distributed.py` is the Dask executor; every
worker prepares its models with `prepare_job_models`, from paths or from bytes sent to it.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from qtool.data.datasets import Dataset, load_dataset
from qtool.faults.campaign.stats import TrialResult
from qtool.faults.campaign.trials import PreparedModel, prepare_model, run_trial
from qtool.modelfile.buffers import ModelFiles

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


def prepare_job_models(
    job: CampaignJob, data: Dataset, files: Sequence[ModelFiles] | None = None
) -> list[PreparedModel]:
    """The job's models, one per (provider, path) in provider-major order, as the task
    indices count them (the same in this process and in every worker); read from their
    paths, or from `files` (one per path, the bytes the client read and sent to a worker)."""
    plan = job.plan
    sources = list(files) if files is not None else [None] * len(job.paths)
    return [
        prepare_model(
            path, data, plan, provider=provider, precision=plan.precision, files=f,
            **plan.prepare_options(),
        )
        for provider in plan.providers
        for path, f in zip(job.paths, sources, strict=True)
    ]  # fmt: skip


def in_process(
    job: CampaignJob, models: list[PreparedModel], y: np.ndarray, tasks: list[TrialTask]
) -> Iterator[TrialResult]:
    """Run the trials here, one after another, on the models already prepared."""
    for t in tasks:
        yield run_trial(models[t.model], t.model, y, t.bits, t.trial, job.plan.seed)


class ProcessPool:
    """Trials in `workers` spawned processes, each preparing the models once; the pool lives
    until `close()`, across the rounds of one campaign."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pool = None
        self._job: CampaignJob | None = None

    def __call__(
        self, job: CampaignJob, models: list[PreparedModel], y: np.ndarray, tasks: list[TrialTask]
    ) -> Iterator[TrialResult]:
        if self._pool is None or self._job != job:
            self.close()
            ctx = mp.get_context("spawn")
            self._pool = ctx.Pool(self.workers, initializer=_init_worker, initargs=(job,))
            self._job = job
        chunks = max(1, len(tasks) // (self.workers * 16))
        yield from self._pool.imap_unordered(_work, tasks, chunksize=chunks)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()
            pool.join()


def process_pool(workers: int) -> Executor:
    """Run the trials in `workers` spawned processes, each preparing the models once."""
    return ProcessPool(workers)


def default_executor(workers: int) -> Executor:
    return in_process if workers == 1 else process_pool(workers)


def close_executor(execute: Executor) -> None:
    """Release what an executor holds (worker processes, a cluster), if anything."""
    close = getattr(execute, "close", None)
    if close is not None:
        close()


_WORKER: dict = {}


def _init_worker(job: CampaignJob) -> None:
    data = load_dataset(job.data_spec, job.plan.split)
    _WORKER["job"] = job
    _WORKER["y"] = data.y
    _WORKER["models"] = prepare_job_models(job, data)


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
