"""Quantisation settings: reduce_range from the CPU's flags, option checks naming the param."""

from __future__ import annotations

import pytest

from qtool.errors import QtoolError
from qtool.quantization.settings import (
    QuantizeOptions,
    cpu_flags,
    default_reduce_range,
    resolve_reduce_range,
)


def test_reduce_range_follows_the_cpu():
    assert default_reduce_range("x86_64", {"avx2", "avx512_vnni"})[0] is False
    assert default_reduce_range("x86_64", {"avx2", "avx_vnni"})[0] is False
    assert default_reduce_range("x86_64", {"avx2", "amx_int8"})[0] is False
    on, why = default_reduce_range("x86_64", {"avx2", "fma"})
    assert on is True and "without VNNI" in why
    assert default_reduce_range("aarch64", set())[0] is False
    assert cpu_flags("processor : 0\nflags : fpu avx2 avx512_vnni\n") == {
        "fpu",
        "avx2",
        "avx512_vnni",
    }


def test_unreadable_flags_and_other_architectures():
    on, why = default_reduce_range("AMD64", set())
    assert on is True and "unreadable" in why
    off, why = default_reduce_range("arm64", {"asimd"})
    assert off is False and "arm64 is not x86" in why
    arm = "processor : 0\nFeatures : fp asimd asimddp\nCPU part : 0xd0c\n"
    assert cpu_flags(arm) == {"fp", "asimd", "asimddp"}
    assert cpu_flags("") == set()


def test_the_users_choice_wins_over_the_cpu():
    assert resolve_reduce_range(True) == (True, "set by the user")
    assert resolve_reduce_range(False) == (False, "set by the user")
    auto, why = resolve_reduce_range(None)
    assert (auto, why) == default_reduce_range() and why.startswith("auto: ")


@pytest.mark.parametrize(
    ("changes", "param", "message"),
    [
        ({"method": "kmeans"}, "method", "'kmeans' is not one of: minmax, entropy"),
        ({"fmt": "onnx"}, "fmt", "is not one of: qdq, qoperator"),
        ({"activation_type": "int4"}, "activation_type", "uint8, int8"),
        ({"weight_type": "fp8"}, "weight_type", "uint8, int8"),
        ({"samples": 0}, "samples", "at least 1"),
        ({"debug_samples": 0}, "debug_samples", "at least 1"),
        ({"fallback_step": 0}, "fallback_step", "at least 1"),
        ({"max_steps": -1}, "max_steps", "0 or more"),
        ({"max_accuracy_drop": -0.5}, "max_accuracy_drop", "percentage points"),
    ],
)
def test_bad_options_name_their_parameter(changes, param, message):
    with pytest.raises(QtoolError, match=message) as info:
        QuantizeOptions(**changes).validate()
    assert info.value.param == param
    assert "--" not in str(info.value)  # the CLI adds the flag, the library never does


def test_defaults_are_valid_and_are_the_cli_defaults():
    options = QuantizeOptions()
    options.validate()
    assert (options.samples, options.method, options.fmt) == (256, "minmax", "qdq")
    assert options.per_channel and options.reduce_range is None
    assert (options.activation_type, options.weight_type) == ("uint8", "int8")
    assert QuantizeOptions().exclude_nodes is not options.exclude_nodes  # no shared lists
