"""Campaign trials on a Dask cluster: the third executor, beside `in_process` and the pool.

The client reads each model's files once more (checking they still hash as prepared), and
sends them with the data set to every worker once (`UnitRunner.share`); each task then
carries a chunk of `TrialTask`s (three numbers each) and returns their `TrialResult`s. A
worker prepares the models once per job with `executor.prepare_job_models` (the pool's code,
from the bytes it was sent) and keeps them for every later chunk and round.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from qtool.cluster.spec import DEFAULT_TIMEOUT, ClusterSpec
from qtool.cluster.units import UnitRunner, worker_state
from qtool.data.datasets import Dataset, load_dataset
from qtool.errors import WorkFailed
from qtool.faults.campaign.executor import CampaignJob, TrialTask, prepare_job_models
from qtool.faults.campaign.stats import TrialResult
from qtool.faults.campaign.trials import PreparedModel, run_trial
from qtool.modelfile.buffers import ModelFiles, read_model_files


@dataclass(frozen=True)
class CampaignInputs:
    """What every worker needs once: the job, each model's bytes as read, the data set."""

    token: str
    job: CampaignJob
    files: tuple[ModelFiles, ...]
    data: Dataset


class DaskExecutor:
    """Runs trial chunks on a Dask cluster; a context manager (or `close()`) ends it."""

    def __init__(self, spec: ClusterSpec, timeout: float = DEFAULT_TIMEOUT):
        self.cluster = spec.text
        self.runner = UnitRunner(spec, timeout)
        self._inputs: dict[CampaignJob, tuple[str, object]] = {}

    def __enter__(self) -> DaskExecutor:
        self.runner.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def workers(self) -> int:
        return self.runner.workers

    def __call__(
        self, job: CampaignJob, models: list[PreparedModel], y: np.ndarray, tasks: list[TrialTask]
    ) -> Iterator[TrialResult]:
        if job not in self._inputs:
            inputs, token = _inputs(job, models, y)
            self._inputs[job] = self.runner.share(inputs, token)
        _, shared = self._inputs[job]
        yield from self.runner.map(_run_trials, shared, tasks, name="trials")

    def close(self) -> None:
        self._inputs.clear()
        self.runner.close()


def _inputs(job: CampaignJob, models: list[PreparedModel], y: np.ndarray):
    """(inputs, token): the files re-read and checked against what the client prepared."""
    files = []
    for path, prepared in zip(job.paths, models, strict=True):
        read = read_model_files(path)
        if read.sha256()[""] != prepared.sha256:
            raise WorkFailed(f"{path} changed while the campaign was starting; run it again")
        files.append(read)
    data = load_dataset(job.data_spec, job.plan.split)
    if data.y is None or not np.array_equal(data.y, y):
        raise WorkFailed(f"data set {job.data_spec} changed while the campaign was starting")
    digest = hashlib.sha256(repr(job).encode())
    for f in files:
        for name, sha in sorted(f.sha256().items()):
            digest.update(f"{name}={sha}".encode())
    digest.update(np.ascontiguousarray(data.x).tobytes())
    digest.update(np.ascontiguousarray(data.y).tobytes())
    token = digest.hexdigest()[:24]
    return CampaignInputs(token, job, tuple(files), data), token


def _run_trials(inputs: CampaignInputs, tasks: list[TrialTask]) -> list[TrialResult]:
    """On a worker: the prepared models (built once per job), then this chunk's trials."""
    models = worker_state(
        inputs.token, lambda: prepare_job_models(inputs.job, inputs.data, inputs.files)
    )
    seed, y = inputs.job.plan.seed, inputs.data.y
    return [run_trial(models[t.model], t.model, y, t.bits, t.trial, seed) for t in tasks]


def dask_executor(spec: ClusterSpec, timeout: float = DEFAULT_TIMEOUT) -> DaskExecutor:
    return DaskExecutor(spec, timeout)
