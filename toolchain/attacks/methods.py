"""The attack methods, one registry entry each; each method is one module with `craft`.

A method is a transfer attack (crafted on the attacker's surrogate, never querying the target),
a query attack (the target's scores are available) or the floor (random noise of the same
norm, which every result is compared with). Modules are imported on use, so listing methods
needs neither torch nor the Adversarial Robustness Toolbox.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field

import numpy as np

from qtool.attacks.budget import Budget
from qtool.errors import MissingExtra
from qtool.registry import Registry

# optional package -> (import name, pip name, qtool extra)
EXTRAS = {
    "torch": ("torch", "torch", "torch"),
    "art": ("art", "adversarial-robustness-toolbox", "attack"),
}
KINDS = ("transfer", "query", "floor")


@dataclass
class CraftRequest:
    """What a method may use. Transfer methods get `surrogate`, query methods `target`;
    neither ever gets the other, so a transfer attack cannot query and nothing takes a
    gradient of the target."""

    x: np.ndarray  # (N, C, H, W) float32 in [0, 1]
    y: np.ndarray  # labels: ground truth of the samples attacked
    budget: Budget
    seed: int
    surrogate: object | None = None  # qtool.attacks.surrogate.Surrogate
    target: object | None = None  # qtool.attacks.target.Target
    steps: int = 10
    queries: int = 1000


@dataclass
class Crafted:
    x_adv: np.ndarray
    seconds: float = 0.0
    query_rows: int = 0  # rows the target evaluated for this attack (query methods)
    queries_to_success: list[int] = field(default_factory=list)  # per fooled sample


@dataclass(frozen=True)
class AttackMethod:
    name: str
    module: str  # holds craft(request: CraftRequest) -> Crafted
    kind: str
    needs: tuple[str, ...]
    summary: str
    surrogate_task: str = "supervised"  # how its surrogate learns (qtool.attacks.pretext.TASKS)

    def craft(self, request: CraftRequest) -> Crafted:
        require(self)
        return importlib.import_module(self.module).craft(request)


def require(method: AttackMethod) -> None:
    """Refuse cleanly (exit 2, with the install line) when a needed package is missing."""
    for need in method.needs:
        import_name, package, extra = EXTRAS[need]
        if importlib.util.find_spec(import_name) is None:
            raise MissingExtra(package, extra, f"the {method.name} attack")


METHODS: Registry[AttackMethod] = Registry("attack method")
ALIASES = {"etf-i": ("etf",), "pgd-transfer": ("pgd",)}  # etf: the authors' released variant
for _entry in [
    AttackMethod(
        "etf-i",
        "qtool.attacks.etf",
        "transfer",
        ("torch",),
        "Error TransFormer (Sun et al. 2022) on a surrogate trained by instance discrimination "
        "(no labels): shallow features pulled towards another class's image, against the worst "
        "small input perturbations",
        surrogate_task="instance",
    ),
    AttackMethod(
        "etf-c",
        "qtool.attacks.etf",
        "transfer",
        ("torch",),
        "Error TransFormer on a surrogate trained by contrastive learning (SimCLR, no labels)",
        surrogate_task="contrastive",
    ),
    AttackMethod(
        "feature",
        "qtool.attacks.feature",
        "transfer",
        ("torch",),
        "shallow-layer feature disruption on the surrogate (PGD on the feature distance)",
    ),
    AttackMethod(
        "pgd-transfer",
        "qtool.attacks.pgd_transfer",
        "transfer",
        ("torch",),
        "PGD on the surrogate's cross-entropy (logits), transferred",
    ),
    AttackMethod(
        "square",
        "qtool.attacks.square",
        "query",
        ("art",),
        "Square Attack (Andriushchenko et al. 2020) through ART, querying the target's scores",
    ),
    AttackMethod(
        "noise",
        "qtool.attacks.noise",
        "floor",
        (),
        "random perturbation of the same norm: the floor every attack must beat",
    ),
]:
    METHODS.add(_entry.name, _entry, aliases=ALIASES.get(_entry.name, ()))

FLOOR = "noise"
