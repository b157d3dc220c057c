"""`run_attack`: every unit of a run, then per (model, method, K, eps) the success rate with
its bootstrap interval beside the noise floor of the same model and budget.

Before any work the methods' packages, the data and every target are checked; the targets'
sha256 is taken before and after, and a target file that changed fails the run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from qtool.attacks.methods import FLOOR, METHODS, require
from qtool.attacks.run import (
    Unit,
    UnitResult,
    _split,
    _target,
    derive_seed,
    run_unit,
    samples_of,
    units,
)
from qtool.attacks.settings import AttackSettings, check_settings
from qtool.attacks.stats import Interval, beats_floor, difference_interval, rate_interval
from qtool.errors import WorkFailed
from qtool.modelfile.load import sha256_file
from qtool.outputs import open_atomic


@dataclass
class Summary:
    """One model under one method, K and budget, pooled over seeds."""

    model: str
    method: str
    kind: str
    k: str
    eps: float
    seeds: int
    correct: int
    clean_accuracy: float
    success: Interval
    noise: Interval
    excess: Interval  # success - noise, paired
    beats_floor: bool | None  # None for the floor itself
    accuracy_under_attack: float
    linf_max: float
    l2_max: float
    per_example_seconds: float  # crafting time per crafted example
    median_queries: float | None = None
    query_rows: int = 0

    @property
    def success_rate(self) -> float:
        return self.success.value

    @property
    def noise_success_rate(self) -> float:
        return self.noise.value


@dataclass
class AttackReport:
    settings: dict
    summaries: list[Summary]
    units: list[UnitResult]
    model_sha256: dict[str, str]
    attack_seconds: float
    examples: dict | None = None
    notes: list[str] = field(default_factory=list)
    workers: int = 1
    cluster: str | None = None

    def to_dict(self) -> dict:
        rows = []
        for s in self.summaries:
            row = asdict(s)
            row.update(success_rate=s.success_rate, noise_success_rate=s.noise_success_rate)
            rows.append(row)
        unit_rows = [{k: v for k, v in asdict(u).items() if k != "success"} for u in self.units]
        return {
            "settings": self.settings,
            "results": rows,
            "units": unit_rows,
            "model_sha256": self.model_sha256,
            "attack_seconds": self.attack_seconds,
            "examples": self.examples,
            "notes": self.notes,
            "workers": self.workers,
            "cluster": self.cluster,
        }


def prepare(settings: AttackSettings) -> dict[str, str]:
    """Everything that can be refused, refused before any work; the targets' sha256."""
    check_settings(settings)
    for name in settings.all_methods():
        require(METHODS.get(name))
    _split(settings.data, "train")
    samples_of(settings)
    digests = {}
    for path in settings.models:
        _target(str(path))
        digests[str(path)] = sha256_file(path)
    return digests


# (settings, units, index of the unit whose images to keep or None) -> (index, result, images
# or None) for every unit, in any order; `in_process` here, `attacks/distributed.py` on Dask
UnitExecutor = Callable[
    [AttackSettings, list[Unit], int | None],
    Iterator[tuple[int, UnitResult, np.ndarray | None]],
]


def in_process(
    settings: AttackSettings, todo: list[Unit], keep: int | None
) -> Iterator[tuple[int, UnitResult, np.ndarray | None]]:
    for i, unit in enumerate(todo):
        result, x_adv = run_unit(settings, unit)
        yield i, result, x_adv if i == keep else None


def run_attack(
    settings: AttackSettings,
    *,
    keep_examples: bool = False,
    on_unit: Callable[[Unit, UnitResult], None] | None = None,
    executor: UnitExecutor | None = None,
) -> tuple[AttackReport, np.ndarray | None]:
    """Run every unit; returns the report and, with keep_examples, the adversarial images of
    the first setting (first method, K, eps and seed, on the first model)."""
    start = time.perf_counter()
    before = prepare(settings)
    todo = units(settings)
    first = settings.all_methods()[0]
    keep = next((i for i, u in enumerate(todo) if u.method == first), None)
    slots: list[UnitResult | None] = [None] * len(todo)
    kept = None
    for i, result, x_adv in (executor or in_process)(
        settings, todo, keep if keep_examples else None
    ):
        slots[i] = result
        if x_adv is not None:
            kept = (todo[i], result, x_adv)
        if on_unit is not None:
            on_unit(todo[i], result)
    results = [r for r in slots if r is not None]
    if len(results) != len(todo):
        raise WorkFailed(f"{len(todo) - len(results)} of {len(todo)} attack units gave no result")
    after = {str(p): sha256_file(p) for p in settings.models}
    changed = [p for p in before if before[p] != after[p]]
    if changed:
        raise WorkFailed(f"target file(s) changed during the attack: {', '.join(changed)}")
    report = AttackReport(
        settings=_settings_dict(settings),
        summaries=summarize(results, settings),
        units=results,
        model_sha256=before,
        attack_seconds=time.perf_counter() - start,
        workers=getattr(executor, "workers", 1),
        cluster=getattr(executor, "cluster", None),
    )
    if kept is None:
        return report, None
    unit, result, x_adv = kept
    report.examples = {
        "method": unit.method,
        "k": result.k,
        "eps": unit.eps,
        "norm": settings.norm,
        "seed": unit.seed,
        "model": result.model,
        "accuracy_under_attack": result.adv_correct / result.attacked,
    }
    return report, x_adv


def _settings_dict(s: AttackSettings) -> dict:
    out = asdict(s)
    out["models"] = [str(p) for p in s.models]
    out["samples_per_class"] = ["all" if k is None else k for k in s.samples_per_class]
    out["methods"] = s.all_methods()
    return out


def summarize(results: list[UnitResult], settings: AttackSettings) -> list[Summary]:
    groups: dict[tuple, list[UnitResult]] = {}
    for r in results:
        groups.setdefault((r.model, r.method, r.k, r.eps), []).append(r)
    floors = {(m, e): rs for (m, meth, _, e), rs in groups.items() if meth == FLOOR}
    boot_seed = derive_seed(settings.seed, "bootstrap")
    out = []
    for (model, method, k, eps), rs in groups.items():
        rs = sorted(rs, key=lambda r: r.seed)
        floor = sorted(floors[(model, eps)], key=lambda r: r.seed)
        attack_flags, floor_flags = [r.success for r in rs], [r.success for r in floor]
        excess = difference_interval(attack_flags, floor_flags, seed=boot_seed)
        is_floor = method == FLOOR
        crafted = sum(r.crafted for r in rs)
        queries = [r.median_queries for r in rs if r.median_queries is not None]
        out.append(
            Summary(
                model=model,
                method=method,
                kind=METHODS.get(method).kind,
                k=k,
                eps=eps,
                seeds=len(rs),
                correct=sum(r.correct for r in rs),
                clean_accuracy=sum(r.correct for r in rs) / sum(r.attacked for r in rs),
                success=rate_interval(attack_flags, seed=boot_seed),
                noise=rate_interval(floor_flags, seed=boot_seed),
                excess=excess,
                beats_floor=None if is_floor else beats_floor(excess),
                accuracy_under_attack=sum(r.adv_correct for r in rs) / sum(r.attacked for r in rs),
                linf_max=max(r.linf_max for r in rs),
                l2_max=max(r.l2_max for r in rs),
                per_example_seconds=sum(r.craft_seconds for r in rs) / max(crafted, 1),
                median_queries=float(np.median(queries)) if queries else None,
                query_rows=sum(r.query_rows for r in rs),
            )
        )
    return out


def save_examples(
    path: Path, x_adv: np.ndarray, settings: AttackSettings, setting: dict | None
) -> Path:
    """The adversarial images in the MedMNIST layout that `qtool eval --data npz:PATH` and
    `qtool predict` read: float32 in [0, 1] (lossless: uint8 would move pixels off the budget
    and change predictions), (N, H, W) for one channel, (N, H, W, C) otherwise."""
    _, y = samples_of(settings)
    images = x_adv[:, 0] if x_adv.shape[1] == 1 else x_adv.transpose(0, 2, 3, 1)
    names = _split(settings.data, settings.target_split).class_names
    with open_atomic(path) as fh:
        np.savez_compressed(
            fh,
            test_images=np.ascontiguousarray(images, np.float32),
            test_labels=y.reshape(-1, 1),
            class_names=np.array(names),
            attack=np.array(json.dumps(setting or {})),
        )
    return path
