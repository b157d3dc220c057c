"""The bit search's seeds on a Dask cluster: one task per seeded search.

The client reads the model once and loads the two splits the search uses (checking them as
the search would, so bad input fails here, before any task); both go to every worker once.
Each task runs `progressive_search` for one seed from those bytes and returns its result
without the flipped model (the log is enough): the client re-creates the first run's model
by replaying its manifest on the source file, which checks the result's sha256.

torch's thread count changes the gradient's last bits, so a worker runs each search with the
client's thread count: the search, and the bits it picks, are then what this machine would
give without a cluster.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from qtool.cluster.spec import DEFAULT_TIMEOUT, ClusterSpec
from qtool.cluster.units import UnitRunner
from qtool.data.datasets import Dataset, load_dataset
from qtool.errors import QtoolError
from qtool.faults.search.attacked import split_data
from qtool.faults.search.progressive import progressive_search
from qtool.faults.search.results import SearchResult
from qtool.faults.storage.manifest import replay
from qtool.modelfile.buffers import ModelFiles, read_model_files


@dataclass
class Preloaded:
    """A data loader that answers from splits loaded by the client (a worker's file system
    may not have the data set)."""

    splits: dict[tuple[str, str], Dataset] = field(default_factory=dict)
    record: bool = False

    def __call__(self, spec: str, split: str) -> Dataset:
        key = (spec, split)
        if key not in self.splits:
            if not self.record:
                raise QtoolError(f"the data set {spec} ({split}) was not sent to this worker")
            self.splits[key] = load_dataset(spec, split)
        return self.splits[key]


@dataclass(frozen=True)
class SearchInputs:
    path: str
    data: str
    bits: int
    until_accuracy: float | None
    attack_samples: int
    method: str
    provider: str
    precision: str
    files: ModelFiles
    load: Preloaded
    torch_threads: int | None


def distributed_searches(
    model: Path | str,
    data: str,
    bits: int,
    until_accuracy: float | None,
    seeds: list[int],
    *,
    attack_samples: int,
    method: str,
    provider: str = "cpu",
    precision: str = "fp32",
    cluster: ClusterSpec,
    timeout: float = DEFAULT_TIMEOUT,
    on_done: Callable[[SearchResult], None] | None = None,
) -> list[SearchResult]:
    """`progressive_search` for each seed on the cluster, in seed order; the first result
    holds its flipped model (replayed here)."""
    files = read_model_files(model)
    loader = Preloaded(record=True)
    for s in seeds:  # the splits every seed's search will ask for, refused here if bad
        split_data(data, attack_samples, s, loader)
    inputs = SearchInputs(
        str(model), data, bits, until_accuracy, attack_samples, method, provider, precision,
        files, Preloaded(loader.splits), _torch_threads(method),
    )  # fmt: skip
    token = _token(inputs)
    results: dict[int, SearchResult] = {}
    with UnitRunner(cluster, timeout) as runner:
        _, shared = runner.share(inputs, token)
        for r in runner.map(_search, shared, seeds, name="search"):
            results[r.seed] = r
            if on_done is not None:
                on_done(r)
    runs = [results[s] for s in seeds]
    runs[0].files = replay(model, runs[0].manifest)
    return runs


def _torch_threads(method: str) -> int | None:
    if method == "oracle":
        return None
    try:
        import torch
    except ModuleNotFoundError:
        return None
    return torch.get_num_threads()


def _token(inputs: SearchInputs) -> str:
    digest = hashlib.sha256(repr((inputs.path, inputs.data, inputs.bits)).encode())
    digest.update(
        repr((inputs.until_accuracy, inputs.attack_samples, inputs.method, inputs.provider,
              inputs.precision)).encode()
    )  # fmt: skip
    digest.update(inputs.files.sha256()[""].encode())
    for key, d in sorted(inputs.load.splits.items()):
        digest.update(repr(key).encode())
        digest.update(d.x.tobytes())
    return digest.hexdigest()[:24]


def _search(inputs: SearchInputs, seeds: list[int]) -> list[SearchResult]:
    """On a worker: each seed's search on its own copy of the bytes; no model sent back."""
    out = []
    for s in seeds:
        with _threads(inputs.torch_threads):
            r = progressive_search(
                inputs.path, inputs.data, inputs.bits, inputs.until_accuracy,
                inputs.attack_samples, s, method=inputs.method, provider=inputs.provider,
                precision=inputs.precision, files=copy.deepcopy(inputs.files), load=inputs.load,
            )  # fmt: skip
        r.files = None
        out.append(r)
    return out


class _threads:
    """torch's thread count set for the duration (nothing without torch or a count)."""

    def __init__(self, count: int | None):
        self.count, self.before = count, None

    def __enter__(self) -> None:
        if self.count is not None:
            import torch

            self.before = torch.get_num_threads()
            torch.set_num_threads(self.count)

    def __exit__(self, *exc) -> None:
        if self.before is not None:
            import torch

            torch.set_num_threads(self.before)
