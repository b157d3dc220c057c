"""BenchPlan: typed settings, checked before any session, errors naming the field."""

from __future__ import annotations

import pytest

from qtool.benchmarking.plan import DEFAULT_SECONDS, BenchPlan
from qtool.errors import QtoolError


def test_defaults_measure_one_cpu_configuration_for_the_default_time():
    plan = BenchPlan()
    plan.check()
    assert (plan.batches, plan.threads, plan.providers) == ([1], [1], ["cpu"])
    assert plan.measured_seconds() == DEFAULT_SECONDS
    assert BenchPlan(runs=50).measured_seconds() is None
    assert BenchPlan(seconds=0.5).measured_seconds() == 0.5
    assert not plan.raw_samples and not plan.spinning


@pytest.mark.parametrize(
    ("changes", "param", "words"),
    [
        ({"runs": 5, "seconds": 1.0}, "runs", "not both"),
        ({"runs": 1}, "runs", "at least 2"),
        ({"seconds": 0.0}, "seconds", "> 0"),
        ({"warmup": -1}, "warmup", ">= 0"),
        ({"batches": []}, "batches", "at least one"),
        ({"batches": [1, 0]}, "batches", "integers >= 1"),
        ({"threads": [True]}, "threads", "integers >= 1"),
        ({"threads": ["2"]}, "threads", "integers >= 1"),
        ({"providers": []}, "providers", "at least one"),
        ({"energy": "joules"}, "energy", "unknown energy method"),
        ({"energy_window_s": 0.0}, "energy_window", "positive length"),
        ({"energy_rounds": 0}, "energy_rounds", "at least one window"),
        ({"opt_level": "max"}, "opt_level", "unknown graph optimisation level"),
    ],
)
def test_bad_values_name_the_field(changes, param, words):
    with pytest.raises(QtoolError, match=words) as info:
        BenchPlan(**changes).check()
    assert info.value.param == param
    assert "--" not in str(info.value)  # the library never spells a flag


def test_settings_record_the_plan_as_run():
    plan = BenchPlan(batches=[1, 32], threads=[2], seed=7, raw_samples=True, powercap_root="/x")
    settings = plan.settings(["CPUExecutionProvider"], "digits:val")
    assert settings["batches"] == [1, 32] and settings["threads"] == [2]
    assert settings["providers"] == ["CPUExecutionProvider"]
    assert settings["seconds"] == DEFAULT_SECONDS and settings["runs"] is None
    assert settings["data"] == "digits:val" and settings["seed"] == 7
    assert settings["raw_samples"] is True and settings["inter_op_threads"] == 1
    assert "powercap_root" not in settings and "allow_short_rapl_windows" not in settings
