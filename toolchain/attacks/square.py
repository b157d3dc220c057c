"""Square Attack (Andriushchenko et al., ECCV 2020) through the Adversarial Robustness Toolbox.

The query baseline: the attacker sees the deployed model's scores. ART's `BlackBoxClassifier`
wraps the ONNX Runtime session (softmax scores, rows sent in batches); ART draws its random
squares from numpy's global generator, which is seeded here and restored afterwards.

Queries per fooled example are counted in the paper's sense (one for the clean image, one per
candidate): ART evaluates, per iteration, all images once and the still-robust ones twice, so
the calls it makes have the sizes N, n0, n0, N, n1, n1, ... and n_j (images still robust before
update j) gives how many were fooled by each update. The rows the target really evaluated
(ART re-queries the current point each iteration) are reported beside them.
"""

from __future__ import annotations

import time

import numpy as np

from qtool.attacks.budget import enforce
from qtool.attacks.methods import Crafted, CraftRequest
from qtool.attacks.target import Target


def craft(request: CraftRequest) -> Crafted:
    from art.attacks.evasion import SquareAttack
    from art.estimators.classification import BlackBoxClassifierNeuralNetwork

    start = time.perf_counter()
    target: Target = request.target
    x, y = request.x, np.asarray(request.y, np.int64)
    classes = int(target.scores(x[:1]).shape[1])
    calls: list[int] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return target.probabilities(np.asarray(batch, np.float32))

    classifier = BlackBoxClassifierNeuralNetwork(
        predict, input_shape=tuple(x.shape[1:]), nb_classes=classes, clip_values=(0.0, 1.0)
    )
    attack = SquareAttack(
        classifier,
        norm=np.inf if request.budget.norm == "linf" else 2,
        eps=request.budget.eps,
        max_iter=request.queries,
        nb_restarts=1,
        batch_size=max(1, len(x)),
        verbose=False,
    )
    state = np.random.get_state()
    np.random.seed(request.seed % 2**32)
    try:
        x_adv = attack.generate(x, y=np.eye(classes, dtype=np.float32)[y])
    finally:
        np.random.set_state(state)
    x_adv = enforce(x, x_adv, request.budget)
    still_robust = int(np.sum(target.predict(x_adv) == y))
    return Crafted(
        x_adv,
        time.perf_counter() - start,
        query_rows=int(sum(calls)),
        queries_to_success=queries_from_calls(calls, len(x), still_robust),
    )


def queries_from_calls(calls: list[int], n: int, still_robust: int) -> list[int]:
    """Queries (paper's sense) of every fooled example, from the sizes of ART's calls; empty
    when the calls do not follow ART's pattern (another ART version), rather than a guess."""
    if len(calls) < 3 or any(c != n for c in calls[0::3]):
        return []
    pairs = list(zip(calls[1::3], calls[2::3], strict=False))
    if any(a != b for a, b in pairs) or len(calls) % 3 not in (0, 1):
        return []
    robust = [a for a, _ in pairs] + [still_robust]
    if any(later > earlier for earlier, later in zip(robust, robust[1:], strict=False)):
        return []
    out: list[int] = []
    for j in range(len(robust) - 1):  # update j fooled robust[j] - robust[j+1] examples
        out += [j + 2] * (robust[j] - robust[j + 1])
    return out
