"""Square Attack through ART on the ONNX Runtime session: seeded, in budget, queries counted."""

from __future__ import annotations

import numpy as np
import pytest
from attack_helpers import BIG_EPS, digits_test

from qtool.attacks.budget import Budget, norms
from qtool.attacks.methods import CraftRequest
from qtool.attacks.square import queries_from_calls
from qtool.attacks.target import load_target


def test_queries_follow_arts_call_pattern():
    # 5 robust images; updates 0, 1, 2 fool 2, 2 and 1 of them
    calls = [5, 5, 5, 5, 3, 3, 5, 1, 1, 5]
    assert queries_from_calls(calls, 5, still_robust=0) == [2, 2, 3, 3, 4]
    # the loop ran out with one image still robust
    assert queries_from_calls([5, 5, 5, 5, 3, 3], 5, still_robust=1) == [2, 2, 3, 3]
    assert queries_from_calls([5, 4, 5], 5, 0) == []  # not ART's pattern: no guess


def test_square_on_the_onnx_target(zoo_models):
    pytest.importorskip("art")
    from qtool.attacks import square

    target = load_target(zoo_models["cnn"])
    x, y = digits_test()
    ok = target.predict(x) == y
    x, y = x[ok][:40], y[ok][:40]
    request = CraftRequest(x, y, Budget(BIG_EPS), 7, target=target, queries=100)
    a = square.craft(request)
    b = square.craft(request)
    assert np.array_equal(a.x_adv, b.x_adv)  # ART's global generator was seeded
    assert norms(x, a.x_adv)[0].max() <= BIG_EPS
    fooled = target.predict(a.x_adv) != y
    assert fooled.mean() > 0.8
    assert len(a.queries_to_success) == fooled.sum()
    assert a.query_rows >= sum(a.queries_to_success)
