"""A hospital-size model through every stage, and fault evaluation at that size (issue 18).

Builds a ResNet-18 (11.2 M parameters, random weights with non-trivial BatchNorm statistics,
1x128x128, 2 classes; `resnet_model.py`, exported as `file.py:factory` as a hospital's own
model would be) on the `synthetic:lesion:128` data set (400 test images), then runs the
pipeline through the CLI,
each stage in its own process: export, quantize, bench, flip (campaign, whole model per trial
and incremental), flip --search, package. It prints, measured in this one run:

- campaign trials/s, whole model vs incremental, on the INT8 model (and that the trial
  results are identical), for the campaign and for each budget alone, beside what re-running
  every row from the earliest hit layer on would give (`suffix_bound`),
- Bit-Flip Attack seconds per chosen flip and the search's peak memory at --attack-samples,
- per stage: wall time and peak resident memory of its process,
- the CPU model and its flags.

The 2 cores of a shared machine make figures noisy: compare the ratios within one run.

    python benchmarks/scale.py [--workdir scale-bench] [--trials 10] [--flips 5] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def run_stage(name: str, args: list[str], stages: dict, workdir: Path) -> str:
    """Run `qtool ARGS` in its own process; record its wall time and peak RSS (from wait4,
    this process alone); returns what it printed."""
    log = workdir / f"{name}.log"
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "qtool", *args], stdout=out, stderr=out)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    text = log.read_text()
    if proc.returncode != 0:
        sys.exit(f"stage {name} failed (exit {proc.returncode}):\n{text}")
    peak = usage.ru_maxrss / 1024  # KiB on Linux
    stages[name] = {"seconds": seconds, "peak_mb": peak}
    print(f"  {name:<26} {seconds:7.1f} s   peak {peak:7.0f} MB", flush=True)
    return text


def campaign(int8: Path, data: str, trials: int, stages: dict, workdir: Path) -> dict:
    """The same campaign twice, whole model per trial and incremental; trials/s of each."""
    out = {}
    for name, extra in (("full", ["--full-eval"]), ("incremental", [])):
        report = workdir / f"campaign.{name}.json"
        run_stage(
            f"flip campaign ({name})",
            ["flip", str(int8), "--bits", "1,5,20", "--trials", str(trials), "--data", data,
             "--seed", "0", "--json", str(report), "--force", *extra],
            stages, workdir,
        )  # fmt: skip
        out[name] = json.loads(report.read_text())
    full, inc = out["full"], out["incremental"]
    same = full["trial_results"] == inc["trial_results"] and full["stats"] == inc["stats"]
    evaluation = inc["models"][0]["evaluation"]
    return {
        "trials": len(inc["trial_results"]),
        "full_trials_per_s": full["trials_per_s"],
        "incremental_trials_per_s": inc["trials_per_s"],
        "speedup": inc["trials_per_s"] / full["trials_per_s"],
        "identical": same,
        "segments": evaluation["segments"],
        "cache_mb": evaluation["cache_mb"],
    }


def per_budget(int8: Path, data: str, trials: int) -> dict[int, dict[str, float]]:
    """Trials/s of each budget alone, whole model vs incremental, in this process: how much
    is saved depends on how early the earliest hit layer is (more bits: earlier)."""
    from dataclasses import replace

    from qtool.faults.campaign import CampaignPlan, run_campaign

    out = {}
    for bits in (1, 5, 20):
        plan = CampaignPlan(budgets=(bits,), trials=trials, seed=1)
        full = run_campaign([int8], data, replace(plan, incremental=False), show_progress=False)
        inc = run_campaign([int8], data, plan, show_progress=False)
        assert full.trial_results == inc.trial_results, bits
        out[bits] = {"full": full.trials_per_s, "incremental": inc.trials_per_s}
        print(
            f"  {bits:>2} bits: whole model {full.trials_per_s:.2f} trials/s, incremental "
            f"{inc.trials_per_s:.2f} trials/s -> {inc.trials_per_s / full.trials_per_s:.1f}x",
            flush=True,
        )
    return out


def suffix_bound(int8: Path, data_spec: str, budgets=(1, 5, 20)) -> dict[int, float]:
    """What re-running layers from the earliest hit one can gain at each budget when every
    row must be re-run: a whole-model trial's time over the expected time of the segments
    from the earliest hit on (clean sessions, no session built). Bits are hit uniformly, so
    P(earliest segment >= j) = (share of bits first read in segments >= j) ** bits. The
    incremental evaluation beats it only by skipping rows whose activations did not change;
    a budget far above it needs a finer unit than layer x row."""
    from qtool.data.datasets import load_dataset
    from qtool.faults.campaign.run import CampaignPlan
    from qtool.faults.campaign.trials import predict, prepare_model

    plan = CampaignPlan(budgets=budgets)
    data = load_dataset(data_spec, plan.split)
    model = prepare_model(int8, data, plan, **plan.prepare_options())
    inc, cache = model.incremental, model.cache
    if inc is None or cache is None:
        return {}
    segs = inc.segments
    seconds = np.zeros(len(segs.models))
    for j, seg in enumerate(segs.models):
        for r in range(len(cache.rows)):
            feeds = cache.env(r, seg.segment.inputs)
            start = time.perf_counter()
            seg.session.run(list(seg.segment.outputs), feeds)
            seconds[j] += time.perf_counter() - start
    start = time.perf_counter()
    predict(model.session(), model.io, model.x, model.batch)
    whole = time.perf_counter() - start
    bits_from = np.zeros(len(seconds))  # eligible bits whose earliest reader is segment j
    for t, n in zip(model.targets, model.space.per_target(), strict=True):
        readers = segs.plan.reads.get(t.loc.name)
        if readers:  # a weight nothing on the way to the scores reads changes nothing
            bits_from[min(readers)] += n
    share_from = np.cumsum(bits_from[::-1])[::-1] / bits_from.sum()  # P(bit first read >= j)
    suffix = np.cumsum(seconds[::-1])[::-1]  # seconds of segments j.. end
    out = {}
    for b in budgets:
        at_least = share_from**b
        p_first = at_least - np.append(at_least[1:], 0.0)  # P(earliest hit segment == j)
        out[b] = whole / float((p_first * suffix).sum())
    return out


def bit_search(int8: Path, data: str, flips: int, samples: int, stages: dict, workdir: Path):
    report = workdir / "search.json"
    run_stage(
        "flip --search",
        ["flip", str(int8), "--search", "progressive", "--bits", str(flips), "--data", data,
         "--attack-samples", str(samples), "--out", str(workdir / "attacked.onnx"),
         "--manifest", str(workdir / "attacked.flips.json"), "--json", str(report), "--force"],
        stages, workdir,
    )  # fmt: skip
    search = json.loads(report.read_text())["search"]
    per_flip = [s["seconds"] for s in search["steps"]]
    return {
        "flips": len(per_flip),
        "attack_samples": search["attack_samples"],
        "method": search["method"],
        "seconds_per_flip": float(np.mean(per_flip)) if per_flip else float("nan"),
        "first_flip_seconds": per_flip[0] if per_flip else float("nan"),
        "setup_seconds": search["search_seconds"] - sum(per_flip),
        "peak_mb": stages["flip --search"]["peak_mb"],
        "accuracy": [search["clean_accuracy"], search["final_accuracy"]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("scale-bench"))
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--trials", type=int, default=10, help="campaign trials per budget")
    parser.add_argument("--flips", type=int, default=5, help="bit-search flips to choose")
    parser.add_argument("--attack-samples", type=int, default=128)
    parser.add_argument("--tiny", action="store_true", help="ResNet at widths 4-32 (smoke run)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    from qtool.machine import cpu_line

    print(f"CPU: {cpu_line()}")
    data = f"synthetic:lesion:{args.size}"
    factory = "resnet_tiny" if args.tiny else "resnet18"
    fp32, int8 = work / "resnet.onnx", work / "resnet.int8.onnx"
    stages: dict = {}
    print(f"pipeline ({factory}, 1x{args.size}x{args.size}, {data}):")
    run_stage("export", ["export", f"{HERE / 'resnet_model.py'}:{factory}", "--input-shape",
                         f"1,1,{args.size},{args.size}", "--out", str(fp32), "--force"],
              stages, work)  # fmt: skip
    run_stage("quantize", ["quantize", str(fp32), "--calib", data, "--out", str(int8),
                           "--json", str(work / "quantize.json"), "--force"],
              stages, work)  # fmt: skip
    run_stage("bench", ["bench", str(fp32), str(int8), "--batch", "1,16", "--seconds", "2",
                        "--json", str(work / "bench.json"), "--force"], stages, work)  # fmt: skip
    camp = campaign(int8, data, args.trials, stages, work)
    search = bit_search(int8, data, args.flips, args.attack_samples, stages, work)
    run_stage("package", ["package", str(int8), "--out", str(work / "bundle"), "--ecc",
                          "--force"], stages, work)  # fmt: skip
    # last: this process grows here, and a stage forked after it would count its pages
    print("campaign trials/s per budget (in this process, identical results checked):")
    budgets = per_budget(int8, data, max(3, args.trials // 2))
    bound = suffix_bound(int8, data)
    print(
        "re-running every row from the earliest hit layer on would give: "
        + ", ".join(f"{b} bits {c:.1f}x" for b, c in bound.items())
        + " (measured: more by skipping rows that did not change, less by the sessions built "
        "for hit segments)"
    )
    print(
        f"campaign on the INT8 model, {camp['trials']} trials: whole model "
        f"{camp['full_trials_per_s']:.2f} trials/s, incremental "
        f"{camp['incremental_trials_per_s']:.2f} trials/s -> {camp['speedup']:.1f}x "
        "(target >= 5x); results identical: "
        f"{camp['identical']}; {camp['segments']} segments, cache {camp['cache_mb']:.0f} MB"
    )
    print(
        f"bit search ({search['method']}), {search['attack_samples']} attack samples: "
        f"{search['seconds_per_flip']:.1f} s per flip over {search['flips']} flips (first "
        f"{search['first_flip_seconds']:.1f} s; setup {search['setup_seconds']:.1f} s), peak "
        f"{search['peak_mb']:.0f} MB (targets <= 5 s/flip, <= 2048 MB)"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "cpu": cpu_line(),
                    "stages": stages,
                    "campaign": camp,
                    "per_budget": budgets,
                    "suffix_bound": bound,
                    "search": search,
                },
                indent=2,
            )  # fmt: skip
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
