"""The method registry: names, kinds, and a clean refusal when a needed package is missing."""

from __future__ import annotations

import pytest

from qtool.attacks import methods
from qtool.attacks.methods import METHODS, require
from qtool.errors import MissingExtra, QtoolError


def test_registry_lists_every_method_with_its_kind():
    assert METHODS.names() == ["etf-i", "etf-c", "feature", "pgd-transfer", "square", "noise"]
    assert {m.kind for m in METHODS} == {"transfer", "query", "floor"}
    assert METHODS.get("pgd").name == "pgd-transfer" and METHODS.get("etf").name == "etf-i"
    tasks = {m.name: m.surrogate_task for m in METHODS if m.kind == "transfer"}
    assert tasks == {
        "etf-i": "instance",
        "etf-c": "contrastive",
        "feature": "supervised",
        "pgd-transfer": "supervised",
    }
    with pytest.raises(QtoolError, match="use one of etf-i, etf-c, feature"):
        METHODS.get("fgsm", param="methods")


def test_missing_package_is_an_install_line(monkeypatch):
    monkeypatch.setitem(
        methods.EXTRAS, "art", ("art_is_not_here", "adversarial-robustness-toolbox", "attack")
    )
    with pytest.raises(MissingExtra, match=r"pip install 'qtool\[attack\]'"):
        require(METHODS.get("square"))
    require(METHODS.get("noise"))  # needs nothing
