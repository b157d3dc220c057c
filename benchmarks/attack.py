"""Lightweight black-box attacks on the demo's digits CNN, FP32 vs INT8, in one table.

Builds the CNN exactly as `qtool demo` does (cached checkpoint, parity-checked export, QDQ INT8
within a 1 pp budget), then runs `qtool attack`'s library on both files: K = 1, 5, 10 and all
train images per class; transfer methods (ETF-I and ETF-C on label-free surrogates, feature
disruption, PGD on the surrogate's logits: no query to the target) vs Square Attack (queries
the target's scores); the noise floor of the same norm; 95 % bootstrap intervals over samples
and seeds; at eps = 8/255, 0.1 (the budget of the ETF authors' code, 25.5/255) and 64/255
(L-inf). Then the time per crafted example per method, the time per target query (ONNX
Runtime rows, 64 per call) and the CPU. `--etf-rho` sets the size of ETF's worst-case input
perturbations (a fraction of eps; default the authors' 1e-3) for an ablation run.

    python benchmarks/attack.py [--seeds 3] [--eps 8/255,0.1,64/255] [--queries 1000]
        [--methods etf-i,etf-c,feature,pgd-transfer,square] [--etf-rho 1e-3] [--json F]
"""

from __future__ import annotations

import argparse
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from qtool.machine import cpu_line


def build_cnn(workdir: Path) -> tuple[Path, Path]:
    from qtool.demo.pipeline import STAGES, run_demo

    wanted = {"train", "export", "quantize"}
    ctx = run_demo(
        workdir,
        force=True,
        models=[("cnn", "cnn", "digits")],
        stages=[(name, fn) for name, fn in STAGES if name in wanted],
    )
    rec = ctx.records["cnn"]
    return rec.paths["fp32"], rec.paths["int8"]


def query_ms(path: Path, rows: int = 64, reps: int = 200) -> float:
    """Milliseconds per row of one ONNX Runtime call on `rows` test images (after warm-up)."""
    from qtool.attacks.target import load_target
    from qtool.data.datasets import load_dataset

    target = load_target(path)
    x = load_dataset("digits", "test").x[:rows]
    for _ in range(10):
        target.probabilities(x)
    start = time.perf_counter()
    for _ in range(reps):
        target.probabilities(x)
    return 1000 * (time.perf_counter() - start) / (reps * rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("attack-bench"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--eps", default="8/255,0.1,64/255")
    parser.add_argument("--samples-per-class", default="1,5,10,all")
    parser.add_argument("--methods", default="etf-i,etf-c,feature,pgd-transfer,square")
    parser.add_argument("--etf-rho", type=float, default=None)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    from qtool.attacks.campaign import run_attack
    from qtool.attacks.settings import AttackSettings
    from qtool.commands.attack_views import results_table
    from qtool.outputs import write_json
    from qtool.report import show

    if args.etf_rho is not None:  # an ablation: the module constant is read at every step
        import qtool.attacks.etf as etf

        etf.RHO = args.etf_rho
    args.workdir.mkdir(parents=True, exist_ok=True)
    fp32, int8 = build_cnn(args.workdir)
    ks = [None if k == "all" else int(k) for k in args.samples_per_class.split(",")]
    settings = AttackSettings(
        models=(fp32, int8),
        data="digits",
        samples_per_class=tuple(ks),
        eps=tuple(float(Fraction(e)) for e in args.eps.split(",")),
        methods=tuple(args.methods.split(",")),
        seeds=args.seeds,
        queries=args.queries,
    )
    start = time.perf_counter()
    report, _ = run_attack(
        settings, on_unit=lambda u, r: print(f"  {r.method} K={r.k} eps={u.eps:.4f} seed {u.seed}")
    )
    show(results_table(report))
    print(f"attack run: {time.perf_counter() - start:.1f} s, {len(report.units)} units")
    for method in settings.all_methods():
        units = [u for u in report.units if u.method == method]
        per_example = sum(u.craft_seconds for u in units) / max(sum(u.crafted for u in units), 1)
        line = f"  {method:13s} {1000 * per_example:8.3f} ms per crafted example"
        trained = [u.surrogate_seconds for u in units if u.surrogate_seconds is not None]
        if trained:
            line += f" (surrogate training apart: median {np.median(trained):.2f} s per K and seed)"
        rows = sum(u.query_rows for u in units)
        if rows:
            per_row = 1000 * sum(u.craft_seconds for u in units) / rows
            line += f"; {rows} target rows, {per_row:.3f} ms per row incl. ART"
        print(line)
    for name, path in (("FP32", fp32), ("INT8", int8)):
        print(
            f"  target query {name}: {query_ms(path):.4f} ms per image (ONNX Runtime, 64 per call)"
        )
    print(f"CPU: {cpu_line()}")
    if args.json:
        write_json(args.json, report.to_dict())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
