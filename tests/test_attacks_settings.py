"""Settings are typed values; every limit is enforced with the parameter named."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtool.attacks.settings import MAX_QUERIES, MAX_SEEDS, AttackSettings, check_settings
from qtool.errors import QtoolError

M = (Path("m.onnx"),)


@pytest.mark.parametrize(
    "change,param",
    [
        (dict(seeds=MAX_SEEDS + 1), "seeds"),
        (dict(queries=MAX_QUERIES + 1), "queries"),
        (dict(eps=tuple(i / 255 for i in range(1, 9))), "eps"),
        (dict(eps=(2.0,)), "eps"),
        (dict(samples_per_class=(0,)), "samples_per_class"),
        (dict(methods=("nope",)), "methods"),
        (dict(models=()), "models"),
        (dict(max_samples=0), "max_samples"),
    ],
)
def test_limits_and_bad_values_name_the_parameter(change, param):
    with pytest.raises(QtoolError) as err:
        check_settings(AttackSettings(**{"models": M, "data": "digits", **change}))
    assert err.value.param == param


def test_defaults_pass_and_the_floor_is_always_added():
    s = AttackSettings(models=M, data="digits", methods=("pgd", "etf"))
    check_settings(s)
    assert s.all_methods() == ["pgd-transfer", "etf-i", "noise"]  # etf: the authors' ETF-I
    assert s.seed_list == [0, 1, 2]
