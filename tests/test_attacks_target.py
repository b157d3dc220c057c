"""The target is only an ONNX Runtime session: its file is never written, and no torch module
is ever built from it (the ONNX-to-torch replica is never even imported)."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
import textwrap

import numpy as np
import onnxruntime as ort
import pytest

from qtool.attacks.target import Target, load_target

pytest.importorskip("torch")


def test_a_target_holds_a_session_and_nothing_else(zoo_models):
    target = load_target(zoo_models["cnn"])
    assert {f.name for f in dataclasses.fields(Target)} == {"name", "session", "io"}
    assert isinstance(target.session, ort.InferenceSession)
    p = target.probabilities(np.zeros((3, 1, 8, 8), np.float32))
    assert p.shape == (3, 10) and np.allclose(p.sum(1), 1, atol=1e-5)


def test_attack_run_leaves_the_file_alone_and_builds_no_torch_model(zoo_models, tmp_path):
    path = zoo_models["cnn"]
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    mtime = path.stat().st_mtime_ns
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        from attack_helpers import quick_settings
        from qtool.attacks.campaign import run_attack
        methods = ("etf", "pgd-transfer") + (("square",) if {_has_art()} else ())
        report, _ = run_attack(quick_settings([{str(path)!r}], methods=methods, seeds=1,
                                              max_samples=30, queries=20))
        print(len(report.units), "qtool.runtimes.torch_replica" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    assert int(out[0]) >= 3 and out[1] == "False"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert path.stat().st_mtime_ns == mtime


def _has_art() -> bool:
    import importlib.util

    return importlib.util.find_spec("art") is not None
