"""ETF: the min-max feature attack transfers far above noise; its inner error is bounded."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import torch  # noqa: E402
from attack_helpers import BIG_EPS, digits_test, surrogate  # noqa: E402

from qtool.attacks import etf  # noqa: E402
from qtool.attacks.budget import Budget, norms  # noqa: E402
from qtool.attacks.feature import relative_distance  # noqa: E402
from qtool.attacks.methods import METHODS, CraftRequest  # noqa: E402
from qtool.attacks.target import load_target  # noqa: E402


def test_etf_from_one_image_per_class_beats_noise_on_fp32_and_int8(zoo_models, tmp_path):
    from qtool.quantization.quantize import QuantizeOptions, quantize_model

    int8 = tmp_path / "cnn.int8.onnx"
    quantize_model(zoo_models["cnn"], int8, "digits", QuantizeOptions(seed=0))
    x, y = digits_test()
    budget = Budget(BIG_EPS)
    x_adv = etf.craft(CraftRequest(x, y, budget, 0, surrogate=surrogate(1, 0))).x_adv
    noisy = METHODS.get("noise").craft(CraftRequest(x, y, budget, 0)).x_adv
    assert norms(x, x_adv)[0].max() <= BIG_EPS
    for path in (zoo_models["cnn"], int8):
        target = load_target(path)
        ok = target.predict(x) == y
        attack = np.mean(target.predict(x_adv)[ok] != y[ok])
        floor = np.mean(target.predict(noisy)[ok] != y[ok])
        assert attack > floor + 0.15, (path.name, attack, floor)


def test_worst_error_stays_in_its_radius_and_lowers_the_disruption():
    s = surrogate(10, 0)
    x = torch.from_numpy(digits_test()[0][:8])
    x_adv = (x + 0.2 * torch.sign(torch.randn_like(x))).clamp(0, 1)
    radius = etf.RADIUS * s.feature_input(x).flatten(1).norm(dim=1)
    xi = etf.worst_error(s, x, x_adv, radius)
    assert torch.all(xi.flatten(1).norm(dim=1) <= radius * (1 + 1e-5))
    with torch.no_grad():
        plain = relative_distance(s.features(x_adv), s.features(x))
        worst = etf.shifted_distance(s, x, x_adv, xi)
    assert float(worst.sum()) < float(plain.sum())
