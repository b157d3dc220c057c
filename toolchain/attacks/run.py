"""Units of work and how they run: one (model, K, eps, method, seed) is one seeded call.

`run_unit(settings, unit)` is a pure function of its arguments: every random choice is drawn
from a seed derived from (seed, K, eps, method), so a unit gives the same result wherever and
in whatever order it runs (a later issue distributes units on Dask). The surrogate and the
transfer examples do not depend on the target, so they are memoised per process (bounded
caches); that changes only the time, never a result.

The target is only ever an ONNX Runtime session (`qtool.attacks.target`): transfer methods never
see it, the query method sees its scores, and nothing takes its gradient.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, field

import numpy as np

from qtool.attacks.budget import Budget, norms
from qtool.attacks.knowledge import attacker_samples
from qtool.attacks.methods import METHODS, Crafted, CraftRequest
from qtool.attacks.settings import AttackSettings, SurrogateSpec
from qtool.attacks.target import Target, load_target
from qtool.data.datasets import Dataset, load_dataset
from qtool.errors import QtoolError

NOT_APPLICABLE = 0  # K of the methods that use no samples (query, floor)


@dataclass(frozen=True)
class Unit:
    model: int  # index into settings.models
    k: int | None  # samples per class; None = all; NOT_APPLICABLE for query/floor methods
    eps: float
    method: str
    seed: int


@dataclass
class UnitResult:
    model: str
    k: str  # "1", "all", "-"
    eps: float
    method: str
    seed: int
    attacked: int  # test samples in the run
    correct: int  # of them, classified correctly by the target before the attack
    fooled: int  # of the correct ones, prediction changed by the attack
    adv_correct: int  # correct predictions on the adversarial examples (accuracy under attack)
    linf_max: float
    l2_max: float
    l2_mean: float
    craft_seconds: float
    crafted: int
    surrogate_seconds: float | None = None
    surrogate_train_accuracy: float | None = None
    query_rows: int = 0
    median_queries: float | None = None
    success: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)

    @property
    def success_rate(self) -> float:
        return self.fooled / self.correct if self.correct else 0.0


def k_label(k: int | None) -> str:
    return "-" if k == NOT_APPLICABLE else ("all" if k is None else str(k))


def derive_seed(*parts: object) -> int:
    """A 32-bit seed from any parts (ints, floats, strings, None), the same on every machine."""
    words = []
    for part in parts:
        if part is None:
            words.append(0xFFFFFFFF)
        elif isinstance(part, float):
            words.append(int(np.float64(part).view(np.uint64)))
        elif isinstance(part, str):
            words.append(zlib.crc32(part.encode()))
        else:
            words.append(int(part) & 0xFFFFFFFFFFFFFFFF)
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def units(settings: AttackSettings) -> list[Unit]:
    """Every unit of a run, grouped so that neighbours share a surrogate."""
    out: list[Unit] = []
    methods = [METHODS.get(m) for m in settings.all_methods()]
    transfer = [m.name for m in methods if m.kind == "transfer"]
    other = [m.name for m in methods if m.kind != "transfer"]
    for seed in settings.seed_list:
        for k in settings.samples_per_class:
            for eps in settings.eps:
                for name in transfer:
                    out += [Unit(i, k, eps, name, seed) for i in range(len(settings.models))]
        for eps in settings.eps:
            for name in other:
                out += [
                    Unit(i, NOT_APPLICABLE, eps, name, seed) for i in range(len(settings.models))
                ]
    return out


# --- memoised inputs (bounded; results never depend on them) ---------------------------------

# Inputs a distributed run sent to this worker process (`attacks/distributed.py`): data splits
# by (spec, split) and model bytes by path, read in their place. Empty in a local run.
SHIPPED: dict = {}


@functools.lru_cache(maxsize=4)
def _split(data: str, split: str) -> Dataset:
    dataset = SHIPPED[data, split] if (data, split) in SHIPPED else load_dataset(data, split)
    if dataset.kind != "image":
        raise QtoolError(
            f"data set {data} is a table; attacks perturb images in [0, 1]", param="data_spec"
        )
    if dataset.y is None:
        raise QtoolError(
            f"data set {data} has no labels in its {dataset.split} split; success is counted on "
            "correctly classified samples, which needs labels",
            param="data_spec",
        )
    return dataset


@functools.lru_cache(maxsize=4)
def attacked_samples(data: str, split: str, max_samples: int, seed: int) -> tuple:
    """The test samples attacked: all, or a seeded subset of max_samples (same for all seeds)."""
    dataset = _split(data, split).take(max_samples, seed=derive_seed(seed, "test-subset"))
    return np.ascontiguousarray(dataset.x, np.float32), np.asarray(dataset.y, np.int64)


def samples_of(settings: AttackSettings) -> tuple[np.ndarray, np.ndarray]:
    return attacked_samples(
        settings.data, settings.target_split, settings.max_samples, settings.seed
    )


@functools.lru_cache(maxsize=8)
def _target(path: str) -> Target:
    return load_target(path, SHIPPED.get(path))


@functools.lru_cache(maxsize=6)
def _surrogate(spec: SurrogateSpec, data: str, k: int | None, seed: int, task: str):
    """The surrogate of (K, seed) trained on `task`; every task sees the same samples and seed."""
    from qtool.attacks.surrogate import train_surrogate

    knowledge = attacker_samples(_split(data, "train"), k, derive_seed(seed, k, "knowledge"))
    return train_surrogate(spec, knowledge, derive_seed(seed, k, "surrogate"), task)


@functools.lru_cache(maxsize=8)
def _transfer(settings: AttackSettings, k: int | None, eps: float, method: str, seed: int):
    """Target-independent examples: the transfer methods and the floor."""
    x, y = samples_of(settings)
    entry = METHODS.get(method)
    surrogate = None
    if entry.kind == "transfer":
        surrogate = _surrogate(settings.surrogate, settings.data, k, seed, entry.surrogate_task)
    request = CraftRequest(
        x,
        y,
        Budget(eps, settings.norm),
        derive_seed(seed, k, eps, method),
        surrogate=surrogate,
        steps=settings.steps,
    )
    return entry.craft(request), surrogate


def run_unit(settings: AttackSettings, unit: Unit) -> tuple[UnitResult, np.ndarray]:
    """One unit: craft (or reuse) the examples, then score them on the target in ONNX Runtime.
    Returns the result and the adversarial images of all attacked samples."""
    x, y = samples_of(settings)
    path = str(settings.models[unit.model])
    target = _target(path)
    correct = target.predict(x) == y
    entry = METHODS.get(unit.method)
    surrogate = None
    if entry.kind == "query":
        crafted = entry.craft(
            CraftRequest(
                x[correct],
                y[correct],
                Budget(unit.eps, settings.norm),
                derive_seed(unit.seed, unit.eps, unit.method),
                target=target,
                queries=settings.queries,
            )
        )
        x_adv = x.copy()
        x_adv[correct] = crafted.x_adv
    else:
        crafted, surrogate = _transfer(settings, unit.k, unit.eps, unit.method, unit.seed)
        x_adv = crafted.x_adv
    return _score(path, target, unit, x, y, correct, x_adv, crafted, surrogate), x_adv


def _score(path, target, unit, x, y, correct, x_adv, crafted: Crafted, surrogate) -> UnitResult:
    pred = target.predict(x_adv)
    success = pred[correct] != y[correct]
    linf, l2 = norms(x[correct], x_adv[correct])
    queries = crafted.queries_to_success
    return UnitResult(
        model=path,
        k=k_label(unit.k),
        eps=unit.eps,
        method=unit.method,
        seed=unit.seed,
        attacked=len(x),
        correct=int(correct.sum()),
        fooled=int(success.sum()),
        adv_correct=int((pred == y).sum()),
        linf_max=float(linf.max()) if len(linf) else 0.0,
        l2_max=float(l2.max()) if len(l2) else 0.0,
        l2_mean=float(l2.mean()) if len(l2) else 0.0,
        craft_seconds=crafted.seconds,
        crafted=len(crafted.x_adv),
        surrogate_seconds=None if surrogate is None else surrogate.seconds,
        surrogate_train_accuracy=None if surrogate is None else surrogate.train_accuracy,
        query_rows=crafted.query_rows,
        median_queries=float(np.median(queries)) if queries else None,
        success=success,
    )
