"""The thread check: CPU time per OS thread around real ONNX Runtime calls."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from qtool.runtimes.session import make_session
from qtool.runtimes.threads import ThreadUse, check_pinning, measure_thread_use, pinning_check

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread CPU times come from /proc (Linux)"
)


def _matmul_session(threads: int | None):
    """A MatMul big enough (128x512 @ 512x512) that ORT splits it over its threads."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((512, 512)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 512])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 512])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    session = make_session(model, threads=threads, spinning=False)
    x = rng.standard_normal((128, 512)).astype(np.float32)
    return lambda: session.run(None, {"x": x})


@linux_only
def test_cpu_provider_pinned_to_one_thread_works_on_one():
    use = measure_thread_use(_matmul_session(1), seconds=0.2)
    check = pinning_check(use, 1)
    assert use.busy_threads == 1 and check["pinned"] is True
    assert check["cpu_per_wall"] <= 1.15 and use.calls >= 3


@linux_only
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="two threads need two logical CPUs")
def test_cpu_provider_pinned_to_two_threads_works_on_two():
    two = measure_thread_use(_matmul_session(2), seconds=0.2)
    check = pinning_check(two, 2)
    assert two.busy_threads == 2 and check["busy_besides_caller"] == 1
    assert check["pinned"] is True


@linux_only
def test_a_session_on_more_threads_than_claimed_is_caught():
    """Four intra-op threads (the caller and three pool threads, whatever the cores) claimed
    as one: the pool threads that did work give it away, on a busy machine too (a pool
    thread that drew little work may fall under the busy share, so at least two count)."""
    four = measure_thread_use(_matmul_session(4), seconds=0.3)
    assert four.busy_threads >= 3 and four.workers >= 2
    check = pinning_check(four, 1)
    assert check["pinned"] is False and check["busy_besides_caller"] == four.workers


def test_the_verdict_reads_the_counts_and_says_how():
    busy = ThreadUse(calls=10, wall_s=1.0, cpu_s=3.0, busy_threads=3, source="test")
    check = pinning_check(busy, 1)
    assert check["pinned"] is False and check["cpu_per_wall"] == 3.0
    # a caller doing the per-call overhead while one pool thread computes: pinned to 1
    waiting = ThreadUse(10, 1.0, 0.9, busy_threads=2, thread_cpu_s=[0.6, 0.3], caller_cpu_s=0.3)
    assert waiting.workers == 1 and pinning_check(waiting, 1)["pinned"] is True
    assert check["cpu_ms_per_call"] == 300.0 and "besides the caller <= 1" in check["method"]
    unknown = ThreadUse(calls=1, wall_s=1.0, cpu_s=0.9, busy_threads=None)
    assert pinning_check(unknown, 1)["pinned"] is None  # no per-thread times: not claimed
    assert pinning_check(ThreadUse(4, 1.0, 2.0, 2), 2)["pinned"] is True


@linux_only
def test_a_stray_thread_in_one_window_is_confirmed_away_but_a_wide_pool_is_not():
    one = _matmul_session(1)

    def stray() -> (
        None
    ):  # another thread of the process, two of them busy within the first window only
        end = time.perf_counter() + 0.08
        while time.perf_counter() < end:
            sum(range(1000))
        release.wait()  # alive, idle, when the window's thread times are read

    release = threading.Event()

    workers = [threading.Thread(target=stray) for _ in range(2)]
    calls = 0

    def call() -> None:
        nonlocal calls
        if calls == 0:
            for worker in workers:
                worker.start()
        calls += 1
        one()

    check = check_pinning(call, 1, 0.1)
    release.set()
    for worker in workers:
        worker.join()
    assert check["pinned"] is True and check["windows"] == 2
    assert check["first_window"]["busy_besides_caller"] >= 1
    wide = check_pinning(_matmul_session(4), 1, 0.1)
    assert wide["pinned"] is False


@linux_only
def test_a_thread_busy_without_any_call_is_left_out_as_background():
    """A thread of the process that works with or without calls (here: spinning Python) is
    not the session's; the idle window before the check finds it."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(2000))

    worker = threading.Thread(target=spin)
    worker.start()
    try:
        check = check_pinning(_matmul_session(1), 1, 0.1)
    finally:
        stop.set()
        worker.join()
    assert check["background_threads_left_out"] >= 1
    assert check["pinned"] is True and check["busy_besides_caller"] == 0
