"""What one `qtool attack` run does, as typed values, and the limits that keep it bounded.

The library takes floats, ints and None (never CLI strings): `eps=[8/255]`,
`samples_per_class=[1, 5, None]` (None = the whole train split).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from qtool.attacks.budget import NORMS, Budget
from qtool.attacks.methods import FLOOR, METHODS
from qtool.errors import QtoolError

# Documented limits (README, `qtool attack --help`): each bounds work that input can inflate.
MAX_MODELS = 8
MAX_K_VALUES = 6
MAX_EPS_VALUES = 6
MAX_SEEDS = 20
MAX_QUERIES = 20_000
MAX_STEPS = 500
DEFAULT_MAX_SAMPLES = 500
MAX_SAMPLES_LIMIT = 10_000


@dataclass(frozen=True)
class SurrogateSpec:
    """The attacker's own network: a zoo name (`cnn`) or `path/to/file.py:build`."""

    model: str = "cnn"
    feature_layer: str | None = None  # default: `stage1` when present, else the first child
    steps: int = 200  # optimiser steps on the attacker's samples (few samples: fixed steps)
    lr: float = 3e-3
    batch_size: int = 64


@dataclass(frozen=True)
class AttackSettings:
    models: tuple[Path, ...]
    data: str
    samples_per_class: tuple[int | None, ...] = (1, 5, 10, None)
    eps: tuple[float, ...] = (8 / 255,)
    norm: str = "linf"
    methods: tuple[str, ...] = ("etf-i", "etf-c", "feature", "pgd-transfer", "square")
    surrogate: SurrogateSpec = field(default_factory=SurrogateSpec)
    target_split: str = "test"
    seeds: int = 3
    seed: int = 0
    queries: int = 1000
    steps: int = 10
    max_samples: int = DEFAULT_MAX_SAMPLES

    def budgets(self) -> list[Budget]:
        return [Budget(e, self.norm) for e in self.eps]

    @property
    def seed_list(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]

    def all_methods(self) -> list[str]:
        """The requested methods (canonical names) and the noise floor, once each."""
        names = [METHODS.canonical(m) for m in self.methods]
        return [n for n in dict.fromkeys([*names, FLOOR]) if n is not None]


def check_settings(s: AttackSettings) -> None:
    """Bad input and exceeded limits are one QtoolError naming the parameter and the limit."""
    _limit(len(s.models), MAX_MODELS, "models", "models")
    if not s.models:
        raise QtoolError("give at least one ONNX model to attack", param="models")
    if s.norm not in NORMS:
        raise QtoolError(f"unknown norm {s.norm!r}: use one of {', '.join(NORMS)}", param="norm")
    if not s.methods:
        raise QtoolError("give at least one attack method", param="methods")
    for name in s.methods:
        METHODS.get(name, param="methods")
    if not s.eps:
        raise QtoolError("give at least one budget", param="eps")
    _limit(len(s.eps), MAX_EPS_VALUES, "budgets", "eps")
    s.budgets()  # validates every eps for the norm
    if not s.samples_per_class:
        raise QtoolError("give at least one number of samples per class", param="samples_per_class")
    _limit(len(s.samples_per_class), MAX_K_VALUES, "values", "samples_per_class")
    for k in s.samples_per_class:
        if k is not None and k < 1:
            raise QtoolError(f"samples per class must be >= 1, got {k}", param="samples_per_class")
    _range(s.seeds, 1, MAX_SEEDS, "seeds")
    _range(s.queries, 1, MAX_QUERIES, "queries")
    _range(s.steps, 1, MAX_STEPS, "steps")
    _range(s.max_samples, 1, MAX_SAMPLES_LIMIT, "max_samples")
    _range(s.surrogate.steps, 1, 100_000, "surrogate")


def _limit(count: int, limit: int, what: str, param: str) -> None:
    if count > limit:
        raise QtoolError(f"{count} {what} is more than the limit of {limit}", param=param)


def _range(value: int, low: int, high: int, param: str) -> None:
    if not low <= value <= high:
        raise QtoolError(f"{value} is outside the allowed range {low}..{high}", param=param)
