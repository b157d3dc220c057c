"""ETF: crafted on a label-free surrogate from one image per class, it transfers to the real
digits CNN (FP32 and INT8, ONNX Runtime) far above noise; its parts do what they claim."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import torch  # noqa: E402
from attack_helpers import BIG_EPS, digits_test, surrogate  # noqa: E402

from qtool.attacks import etf  # noqa: E402
from qtool.attacks.budget import Budget, norms  # noqa: E402
from qtool.attacks.methods import METHODS, CraftRequest  # noqa: E402
from qtool.attacks.target import load_target  # noqa: E402


def test_etf_i_from_one_image_per_class_beats_noise_on_fp32_and_int8(zoo_models, tmp_path):
    from qtool.quantization.quantize import QuantizeOptions, quantize_model

    int8 = tmp_path / "cnn.int8.onnx"
    quantize_model(zoo_models["cnn"], int8, "digits", QuantizeOptions(seed=0))
    x, y = digits_test()
    budget = Budget(BIG_EPS)
    request = CraftRequest(x, y, budget, 0, surrogate=surrogate(1, 0, "instance"))
    x_adv = METHODS.get("etf-i").craft(request).x_adv
    noisy = METHODS.get("noise").craft(CraftRequest(x, y, budget, 0)).x_adv
    assert norms(x, x_adv)[0].max() <= BIG_EPS and x_adv.min() >= 0 and x_adv.max() <= 1
    for path in (zoo_models["cnn"], int8):
        target = load_target(path)
        ok = target.predict(x) == y
        attack = np.mean(target.predict(x_adv)[ok] != y[ok])
        floor = np.mean(target.predict(noisy)[ok] != y[ok])
        assert attack > floor + 0.15, (path.name, attack, floor)


def test_etf_c_under_l2_keeps_the_budget_and_raises_its_criterion():
    x, y = digits_test()
    x, y = x[:40], y[:40]
    s = surrogate(1, 0, "contrastive")
    budget = Budget(1.5, "l2")
    x_adv = METHODS.get("etf-c").craft(CraftRequest(x, y, budget, 0, surrogate=s)).x_adv
    assert norms(x, x_adv)[1].max() <= 1.5
    noisy = METHODS.get("noise").craft(CraftRequest(x, y, budget, 0)).x_adv
    guide = torch.from_numpy(x[etf.guides(y, 0)])
    with torch.no_grad():
        f_s, f_t = etf.view_features(s, torch.from_numpy(x)), etf.view_features(s, guide)

        def score(images):
            return etf.criterion(f_s, f_t, etf.view_features(s, torch.from_numpy(images)))

        crafted, noise = score(x_adv), score(noisy)
    assert float((crafted > noise).float().mean()) > 0.9


def test_guides_are_of_another_class_and_seeded():
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    g = etf.guides(y, 3)
    assert np.all(y[g] != y) and np.array_equal(g, etf.guides(y, 3))
    assert any(not np.array_equal(g, etf.guides(y, s)) for s in range(4, 10))
    same = etf.guides(np.array([5, 5, 5]), 0)
    assert np.all(same != np.arange(3))  # one class only: another image
    assert etf.guides(np.array([1]), 0).tolist() == [0]


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_error_transform_has_its_size_and_lowers_the_criterion(norm):
    s = surrogate(1, 0, "instance")
    x, y = digits_test()
    src = torch.from_numpy(x[:16])
    tgt = torch.from_numpy(x[etf.guides(y, 0)[:16]])
    adv = (src + 0.1 * torch.sign(torch.randn_like(src))).clamp(0, 1)
    rho = 0.2
    p_s, p_t, p_a = etf.error_transform(s, src, tgt, adv, Budget(0.3, norm), rho)

    def size(p):
        return p.flatten(1).abs().amax(1) if norm == "linf" else p.flatten(1).norm(dim=1)

    assert torch.allclose(size(p_a), torch.full((16,), rho), rtol=1e-5)
    assert torch.allclose(size(p_s), torch.full((16,), rho * etf.RATIO), rtol=1e-5)
    with torch.no_grad():
        clean = etf.criterion(*(etf.view_features(s, v) for v in (src, tgt, adv)))
        shifted = [v - p for v, p in ((src, p_s), (tgt, p_t), (adv, p_a))]
        worst = etf.criterion(*(etf.view_features(s, v) for v in shifted))
    assert float(worst.sum()) < float(clean.sum())
