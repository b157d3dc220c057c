"""Harness overhead of `qtool bench`: its p50 against a bare `session.run` loop, in one run.

Each model gets one session (1 intra-op thread, spinning off, all graph optimisations: the
bench defaults) shared by three arms, measured in alternating blocks in a seeded order:

  qtool        qtool.runtimes.timing.measure_interleaved on qtool.benchmarking's prepared call,
               exactly what `qtool bench` times
  bare names   for ...: t0 = perf_counter_ns(); session.run(names, feed); t1 = ...
  bare None    the same with session.run(None, feed), the form most user code has

Overhead = p50(qtool) / p50(bare names) - 1 (same call, so only the harness differs); the goal
is < 1 %. Against `bare None` qtool can be a little faster: it resolves the output names once
instead of on every call. (The timer makes a two-argument call as `fn(a, b)`, not `fn(*args)`:
CPython specialises the former; the generic form cost ~2 % on a 5 us model.)

Run: python benchmarks/bench_overhead.py [--blocks 30] [--block-runs 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qtool.benchmarking.inputs import BenchModel, prepare_sessions
from qtool.runtimes import make_session
from qtool.runtimes.timing import measure_interleaved


def mlp(sizes: list[int], seed: int = 0, image: tuple[int, ...] | None = None) -> onnx.ModelProto:
    """A Gemm+Relu stack with random weights (dynamic batch); with `image` (C, H, W) the
    input is an image batch flattened first."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    if image is not None:
        nodes, prev = [helper.make_node("Flatten", ["x"], ["flat"])], "flat"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = rng.normal(0, 1 / np.sqrt(a), (a, b)).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}"),
        ]
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"g{i}"]))
        prev = f"g{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *(image or sizes[:1])])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["N", sizes[-1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def bare_block(call, runs: int) -> list[int]:
    perf = time.perf_counter_ns
    out = []
    for _ in range(runs):
        t0 = perf()
        call()
        out.append(perf() - t0)
    return out


def measure(name: str, model: onnx.ModelProto, blocks: int, block_runs: int, seed: int) -> None:
    session = make_session(model, threads=1, opt_level="all", spinning=False)
    prepared = prepare_sessions([BenchModel(name, name, session, {})], 1, seed)[0]
    qtool_contender = prepared.contender()
    feed = {k: v.copy() for k, v in prepared.feeds.items()}

    names = [o.name for o in session.get_outputs()]

    def bare_names():
        return session.run(names, feed)

    def bare_none():
        return session.run(None, feed)

    samples: dict[str, list[int]] = {"qtool": [], "bare names": [], "bare None": []}
    rng = np.random.default_rng(seed)
    bare_block(bare_none, block_runs)  # warm-up
    for _ in range(blocks):
        for arm in rng.permutation(3):
            if arm == 0:
                raw = measure_interleaved([qtool_contender], runs=block_runs, warmup=0, seed=seed)
                samples["qtool"] += raw.latencies_ns[0]
            elif arm == 1:
                samples["bare names"] += bare_block(bare_names, block_runs)
            else:
                samples["bare None"] += bare_block(bare_none, block_runs)
    p50 = {k: float(np.median(v)) / 1e3 for k, v in samples.items()}
    over = p50["qtool"] / p50["bare names"] - 1
    over_none = p50["qtool"] / p50["bare None"] - 1
    n = len(samples["qtool"])
    print(
        f"{name:<24} n={n:<6} p50 us: qtool {p50['qtool']:8.2f}  bare names "
        f"{p50['bare names']:8.2f}  bare None {p50['bare None']:8.2f} | overhead "
        f"{100 * over:+.2f} % (vs run(None, ...): {100 * over_none:+.2f} %)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--block-runs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(
        f"harness overhead, {args.blocks} blocks x {args.block_runs} runs per arm, "
        f"alternating in seeded order (seed {args.seed}); goal < 1 %"
    )
    for name, sizes in (
        ("tiny Gemm 64->10", [64, 10]),
        ("MLP 64->256->256->10", [64, 256, 256, 10]),
        ("MLP 784->1024->1024->10", [784, 1024, 1024, 10]),
    ):
        measure(name, mlp(sizes), args.blocks, args.block_runs, args.seed)


if __name__ == "__main__":
    main()
