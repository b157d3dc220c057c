"""The perturbation budget: an L-inf or L2 ball of radius eps around each image, inside [0, 1].

Every method ends with `enforce`, which makes the bound hold exactly on the float32 arrays that
are evaluated and saved (measured in float64, where the difference of two float32 values is
exact), so a reported eps is never exceeded by a rounding ulp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qtool.errors import QtoolError

NORMS = ("linf", "l2")
PIXEL_RANGE = (0.0, 1.0)


@dataclass(frozen=True)
class Budget:
    """Radius `eps` of the `norm` ball, in pixel units of images scaled to [0, 1]."""

    eps: float
    norm: str = "linf"

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            known = ", ".join(NORMS)
            raise QtoolError(f"unknown norm {self.norm!r}: use one of {known}", param="norm")
        if not (np.isfinite(self.eps) and self.eps > 0):
            raise QtoolError(f"budget {self.eps!r} must be a positive number", param="eps")
        if self.norm == "linf" and self.eps >= 1:
            raise QtoolError(
                f"an L-inf budget of {self.eps:g} allows any image in [0, 1]; give one below 1, "
                "like 8/255",
                param="eps",
            )


def norms(x: np.ndarray, x_adv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample L-inf and L2 norms of the perturbation, in float64."""
    d = (np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1)
    if not len(d):
        return np.zeros(0), np.zeros(0)
    return np.abs(d).max(axis=1), np.sqrt((d * d).sum(axis=1))


def enforce(x: np.ndarray, x_adv: np.ndarray, budget: Budget) -> np.ndarray:
    """x_adv projected into the budget ball and [0, 1], exactly, as float32."""
    x64 = np.asarray(x, np.float64)
    d = np.asarray(x_adv, np.float64) - x64
    if budget.norm == "linf":
        d = np.clip(d, -budget.eps, budget.eps)
    else:
        flat = np.sqrt((d.reshape(len(d), -1) ** 2).sum(axis=1))
        scale = np.minimum(1.0, budget.eps / np.maximum(flat, 1e-30))
        d = d * scale.reshape((-1,) + (1,) * (d.ndim - 1))
    out = np.clip(x64 + d, *PIXEL_RANGE).astype(np.float32)
    for _ in range(64):  # float32 rounding may overshoot by an ulp: step back towards x
        over = _over_budget(x, out, budget)
        if not over.any():
            return out
        if budget.norm == "linf":
            mask = np.abs(out.astype(np.float64) - x64) > budget.eps
            out[mask] = np.nextafter(out[mask], np.asarray(x, np.float32)[mask])
        else:
            shrink = x64[over] + (out[over].astype(np.float64) - x64[over]) * (1 - 1e-6)
            out[over] = np.clip(shrink, *PIXEL_RANGE).astype(np.float32)
    raise AssertionError("could not bring the perturbation inside its budget")  # pragma: no cover


def _over_budget(x: np.ndarray, x_adv: np.ndarray, budget: Budget) -> np.ndarray:
    linf, l2 = norms(x, x_adv)
    return (linf if budget.norm == "linf" else l2) > budget.eps


def random_in_ball(shape: tuple[int, ...], budget: Budget, rng: np.random.Generator) -> np.ndarray:
    """A random perturbation on the sphere of the ball (the largest of its norm), per sample.

    L-inf: a random sign per pixel times eps; L2: a Gaussian direction scaled to length eps.
    """
    if budget.norm == "linf":
        return budget.eps * rng.choice(np.array([-1.0, 1.0]), size=shape)
    d = rng.standard_normal(shape)
    flat = np.sqrt((d.reshape(shape[0], -1) ** 2).sum(axis=1))
    return d * (budget.eps / np.maximum(flat, 1e-30)).reshape((-1,) + (1,) * (len(shape) - 1))


# --- torch helpers for the gradient methods (torch is imported by the caller) ----------------


def torch_step(delta, grad, alpha: float, budget: Budget):
    """One ascent step of size alpha: the sign of the gradient (L-inf) or its direction (L2)."""
    if budget.norm == "linf":
        return delta + alpha * grad.sign()
    flat = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
    return delta + alpha * grad / flat.view(-1, *([1] * (grad.dim() - 1)))


def torch_project(x, delta, budget: Budget):
    """delta projected into the ball, then so that x + delta stays inside [0, 1]."""
    if budget.norm == "linf":
        delta = delta.clamp(-budget.eps, budget.eps)
    else:
        flat = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        factor = (budget.eps / flat).clamp(max=1.0)
        delta = delta * factor.view(-1, *([1] * (delta.dim() - 1)))
    return (x + delta).clamp(*PIXEL_RANGE) - x
