"""Real `qtool` processes: SIGTERM and SIGINT mid-write leave no temp file or staging folder
(the CLI turns them into exceptions, so `finally` blocks run); a SIGKILL's leftovers are
swept by the next run of the same output; exit-2 errors are one stderr line, with no ONNX
Runtime log line, and so are click's usage errors."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from flip_models import large_mlp
from onnx import TensorProto, helper, numpy_helper

from qtool.outputs import TEMP_MARK

QTOOL = [sys.executable, "-m", "qtool.cli"]


@pytest.fixture(scope="module")
def big_model(tmp_path_factory) -> Path:
    return large_mlp(tmp_path_factory.mktemp("big") / "big.onnx", megabytes=16)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if TEMP_MARK in p.name]


def start_package(model: Path, out: Path) -> subprocess.Popen:
    """`qtool package --ecc` of a 16 MB model, returned once its staging folder exists."""
    cmd = [*QTOOL, "package", str(model), "--out", str(out), "--ecc", "--force"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not leftovers(out.parent) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    if proc.poll() is not None:
        pytest.skip("package finished before a signal could be sent (machine too fast)")
    return proc


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_write_leaves_nothing_behind(big_model, tmp_path, sig, code):
    out = tmp_path / "bundle"
    proc = start_package(big_model, out)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert leftovers(tmp_path) == [] and not out.exists()
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1


def test_a_sigkill_leftover_is_swept_by_the_next_run(big_model, tmp_path):
    out = tmp_path / "bundle"
    proc = start_package(big_model, out)
    proc.kill()
    proc.wait(timeout=60)
    assert leftovers(tmp_path)  # SIGKILL cannot be caught: the staging folder stays...
    done = subprocess.run(
        [*QTOOL, "package", str(big_model), "--out", str(out), "--force"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert leftovers(tmp_path) == [] and (out / "manifest.json").is_file()  # ...until now


def _failing_at_run_time(path: Path) -> Path:
    """Loads in onnx and ONNX Runtime, fails inside a kernel: Reshape to 7 columns."""
    w = np.ones((64, 10), np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["y"]),
            helper.make_node("Reshape", ["y", "shape"], ["scores"]),
        ],
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 7])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([-1, 7]), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_exit_2_is_one_line_without_onnx_runtime_log_lines(tmp_path):
    model = _failing_at_run_time(tmp_path / "bad.onnx")
    done = subprocess.run(
        [*QTOOL, "eval", str(model), "--data", "digits"], capture_output=True, text=True
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "fails in ONNX Runtime" in lines[0], done.stderr
    assert "[E:onnxruntime" not in done.stderr and "[W:onnxruntime" not in done.stderr


def test_usage_errors_are_one_line(tmp_path):
    for args in (["eval"], ["flip", "m.onnx", "--bits", "x"], ["--limit", "nope=1", "inspect"]):
        done = subprocess.run([*QTOOL, *args], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
