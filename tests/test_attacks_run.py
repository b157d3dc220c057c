"""Units: independent, seeded calls whose results do not depend on caches or order."""

from __future__ import annotations

import numpy as np
import pytest
from attack_helpers import quick_settings

from qtool.attacks import run
from qtool.attacks.run import NOT_APPLICABLE, derive_seed, run_unit, units

pytest.importorskip("torch")


def test_units_cover_every_setting_once(tmp_path):
    s = quick_settings(
        [tmp_path / "a.onnx", tmp_path / "b.onnx"],
        samples_per_class=(1, None),
        eps=(0.1, 0.2),
        methods=("etf-i", "feature"),
        seeds=2,
    )
    all_units = units(s)
    # per seed: 2 K x 2 eps x 2 methods x 2 models + noise: 2 eps x 2 models
    assert len(all_units) == 2 * (16 + 4) == len(set(all_units))
    assert {u.k for u in all_units if u.method == "noise"} == {NOT_APPLICABLE}


def test_derive_seed_is_stable_and_separates_parts():
    assert derive_seed(0, 1, 8 / 255, "etf") == derive_seed(0, 1, 8 / 255, "etf")
    assert derive_seed(0, 1, "etf") != derive_seed(0, None, "etf")
    assert derive_seed(1, 8 / 255) != derive_seed(1, 16 / 255)


def test_a_unit_gives_the_same_result_cold_or_cached(zoo_models):
    s = quick_settings([zoo_models["cnn"]], max_samples=40, seeds=1)
    unit = next(u for u in units(s) if u.method == "etf-i")
    first, x_first = run_unit(s, unit)
    run._transfer.cache_clear()
    run._surrogate.cache_clear()
    again, x_again = run_unit(s, unit)
    assert np.array_equal(x_first, x_again)
    assert (first.fooled, first.correct, first.adv_correct) == (
        again.fooled,
        again.correct,
        again.adv_correct,
    )
    assert first.attacked == 40 and first.linf_max <= unit.eps
