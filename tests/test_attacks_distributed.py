"""Attack units on a Dask scheduler: the same report (timings and placement aside) and the
same kept adversarial images as in this process."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from attack_helpers import FAST_SURROGATE, quick_settings

from qtool.attacks.campaign import run_attack
from qtool.cluster import parse_cluster

pytest.importorskip("torch")
pytest.importorskip("distributed")


def _comparable(report) -> str:
    def blank(value):
        if isinstance(value, dict):
            return {
                k: None if k in ("cluster", "workers") or k.endswith("_seconds") else blank(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [blank(v) for v in value]
        return value

    return json.dumps(blank(report.to_dict()), default=str)


def test_units_on_a_scheduler_match_this_process(zoo_models, dask_scheduler):
    from qtool.attacks.distributed import dask_units

    settings = quick_settings(
        [zoo_models["cnn"]],
        methods=("pgd-transfer",),
        samples_per_class=(5,),
        surrogate=replace(FAST_SURROGATE, steps=20),
        max_samples=60,
    )
    here, x_here = run_attack(settings, keep_examples=True)
    with dask_units(parse_cluster(dask_scheduler)) as execute:
        there, x_there = run_attack(settings, keep_examples=True, executor=execute)
    assert _comparable(there) == _comparable(here)
    assert there.cluster == dask_scheduler and here.cluster is None
    assert np.array_equal(x_there, x_here) and there.examples == here.examples
    assert len(there.units) == 2 + 2  # pgd-transfer and the noise floor, for each seed
