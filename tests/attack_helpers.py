"""Small shared pieces of the attack tests: a briefly trained surrogate, quick settings.

Surrogates train for a few dozen steps (seconds); the targets are the session-scoped zoo
models of conftest.py (real models trained on digits, exported to ONNX).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from qtool.attacks.settings import AttackSettings, SurrogateSpec
from qtool.data.datasets import load_dataset

FAST_SURROGATE = SurrogateSpec(steps=60)
BIG_EPS = 64 / 255  # 8x8 digits have 17 grey levels: 8/255 moves none of them far


@functools.lru_cache(maxsize=4)
def surrogate(k: int | None = 10, seed: int = 0, task: str = "supervised"):
    from qtool.attacks.knowledge import attacker_samples
    from qtool.attacks.surrogate import train_surrogate

    train = load_dataset("digits", "train")
    return train_surrogate(FAST_SURROGATE, attacker_samples(train, k, seed), seed, task)


@functools.lru_cache(maxsize=1)
def digits_test(n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    test = load_dataset("digits", "test").take(n, seed=0)
    return test.x, test.y


def quick_settings(models: list[Path], **kw) -> AttackSettings:
    base = dict(
        models=tuple(models),
        data="digits",
        samples_per_class=(10,),
        eps=(BIG_EPS,),
        methods=("etf-i",),
        surrogate=FAST_SURROGATE,
        seeds=2,
        max_samples=100,
    )
    base.update(kw)
    return AttackSettings(**base)
