"""Hostile input, measured: mutated ONNX models through inspect, eval, package, flip, predict.

Each case is one mutant of the demo's INT8 CNN or MLP (alternating): a protobuf-field edit
(walked with ONNX's descriptors) or a raw-byte edit (1-3 stacked), or one of the issue's
reproducers; every command runs on every case, in-process through click's CliRunner, one
worker process per command (so its peak memory is its own), each under RLIMIT_AS so runaway
allocation is caught as a MemoryError rather than the machine's OOM killer. A watchdog
kills a worker that reports nothing for --timeout seconds (a hang) and restarts it at the
next case. Then a sample runs as real `qtool` subprocesses: stderr must be one line on exit
2 (no ONNX Runtime log lines), and runs killed by SIGTERM mid-write must leave no temp
files, runs killed by SIGKILL none after the next run of the same output.

Printed per command: cases, exit codes, internal errors, malformed models accepted (exit 0
on a model onnx or ONNX Runtime cannot load), inputs changed, hangs, multi-line errors,
peak RSS; plus the CPU and the wall time.

Run: python benchmarks/fuzz.py --cases 10000 [--demo qtool-demo] [--jobs 2] [--seed 0]
(builds the demo models with `qtool demo --out DEMO` when DEMO has none).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import mutants  # noqa: E402
from fuzzing import COMMANDS, Base, argv, malformed, run_case, write_case  # noqa: E402

KINDS = ("cnn", "mlp")


def make_mutant(index: int, seed: int, clean: bytes) -> tuple[bytes, dict[str, bytes], str]:
    """Case `index`: (mutant bytes, files beside it, how it was made)."""
    rng = random.Random(seed * 1_000_003 + index)
    names = sorted(mutants.REPRODUCERS)
    if index % 25 == 0:
        name = names[(index // 25) % len(names)]
        extra = {}
        if name in mutants.EXTERNAL_REPRODUCERS:
            extra = {"w.bin": mutants.external_payload(clean)}
        try:
            return mutants.REPRODUCERS[name](clean), extra, name
        except (StopIteration, ValueError):
            pass  # a reproducer that does not apply to this model: fall through
    data, how = clean, []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if rng.random() < 0.5 and len(data) > 16:
            try:
                data = mutants.random_field_edit(data, rng)
                how.append("field")
                continue
            except (IndexError, ValueError):
                pass
        data = mutants.random_raw_edit(data, rng)
        how.append("raw")
    return data, {}, "+".join(how)


# --- worker: one command over a range of cases -----------------------------------------------


def worker(
    command: str,
    bases: dict,
    start: int,
    cases: int,
    seed: int,
    folder: str,
    conn,
    memory_limit: int,
) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    from click.testing import CliRunner

    runner = CliRunner()
    clean = {kind: Path(base.model).read_bytes() for kind, base in bases.items()}
    case = Path(folder) / f"case-{command}"
    for index in range(start, cases):
        kind = KINDS[index % 2]
        base = bases[kind]
        conn.send(("start", index))
        mutant, extra, how = make_mutant(index, seed, clean[kind])
        write_case(case, base, mutant, extra)
        verdict = malformed(case / "in" / "m.onnx")
        outcome = run_case(command, base, case, verdict, runner)
        first = outcome.stderr.strip().splitlines()[:1]
        conn.send(
            (
                "done",
                index,
                outcome.exit_code,
                outcome.internal,
                outcome.accepted_malformed,
                bool(outcome.inputs_changed),
                outcome.one_line,
                first[0][:300] if first else "",
                how,
                outcome.seconds,
            )
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    conn.send(("peak", peak))
    conn.close()


def run_command(command, bases, cases, seed, folder, timeout, memory_limit, results):
    """Run every case of one command in a worker, restarting it after a hang."""
    stats = results[command]
    start = 0
    ctx = mp.get_context("fork")
    while start < cases:
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=worker,
            args=(command, bases, start, cases, seed, folder, child, memory_limit),
        )
        proc.start()
        child.close()
        current = start
        finished = False
        while True:
            if not parent.poll(timeout):
                stats["hangs"] += 1
                stats["hang_cases"].append(current)
                proc.kill()
                proc.join()
                start = current + 1
                break
            try:
                msg = parent.recv()
            except EOFError:  # the worker died (a crash in native code, the OOM killer)
                proc.join()
                stats["crashes"] += 1
                stats["crash_cases"].append((current, proc.exitcode))
                start = current + 1
                break
            if msg[0] == "start":
                current = msg[1]
            elif msg[0] == "done":
                record(stats, msg)
            elif msg[0] == "peak":
                stats["peak"] = max(stats["peak"], msg[1])
                finished = True
                proc.join()
                break
        if finished:
            break
    return stats


def record(stats, msg) -> None:
    _, index, code, internal, accepted, changed, one_line, first, how, seconds = msg
    stats["cases"] += 1
    stats["exit"][code] += 1
    stats["seconds"] += seconds
    for key, flag in (
        ("internal", internal),
        ("accepted", accepted),
        ("changed", changed),
        ("multiline", not one_line),
    ):
        if flag:
            stats[key] += 1
            if len(stats[f"{key}_examples"]) < 5:
                stats[f"{key}_examples"].append((index, how, first))
    if code == 2:
        stats["messages"][first.split(":")[0][:60]] += 1


def new_stats() -> dict:
    stats = defaultdict(int)
    stats.update(exit=Counter(), messages=Counter(), hang_cases=[], crash_cases=[], peak=0)
    for key in ("internal", "accepted", "changed", "multiline"):
        stats[f"{key}_examples"] = []
    return stats


# --- a sample as real subprocesses: stderr, signals, leftovers -------------------------------


def subprocess_sample(bases, seed, folder: Path, count: int, timeout: float) -> dict:
    """`count` cases per command as `qtool` processes; then SIGTERM and SIGKILL mid-run."""
    out = {"runs": 0, "multiline": [], "hangs": 0, "ort_log_lines": 0}
    clean = {kind: Path(base.model).read_bytes() for kind, base in bases.items()}
    case = folder / "subprocess-case"
    for index in range(count):
        kind = KINDS[index % 2]
        mutant, extra, how = make_mutant(10**6 + index, seed, clean[kind])
        write_case(case, bases[kind], mutant, extra)
        for command in COMMANDS:
            shutil.rmtree(case / "out", ignore_errors=True)
            (case / "out").mkdir()
            cmd = ["qtool", *argv(command, bases[kind], case)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                out["hangs"] += 1
                continue
            out["runs"] += 1
            lines = proc.stderr.strip().splitlines()
            if proc.returncode == 2 and len(lines) != 1:
                out["multiline"].append((command, how, lines[:3]))
            out["ort_log_lines"] += sum("onnxruntime" in ln and "[" in ln for ln in lines)
    out.update(signal_runs(bases, folder))
    return out


def _temp_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".qtool-tmp-" in p.name]


def signal_runs(bases, folder: Path) -> dict:
    """Kill `qtool package --ecc` of the CNN (the longest write) at staggered moments."""
    results = {
        "sigterm_runs": 0,
        "sigterm_leftovers": 0,
        "sigkill_runs": 0,
        "sigkill_leftovers_after_rerun": 0,
        "sigterm_exit_codes": Counter(),
    }
    work = folder / "signals"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    model = str(bases["cnn"].model)
    for sig, key in ((signal.SIGTERM, "sigterm"), (signal.SIGKILL, "sigkill")):
        for delay in (0.3, 0.6, 0.9, 1.2, 1.5, 1.8):
            out = work / f"{key}-bundle.tar.gz"
            cmd = [
                "qtool",
                "package",
                model,
                "--out",
                str(out),
                "--ecc",
                "--format",
                "tar.gz",
                "--force",
            ]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(delay)
            proc.send_signal(sig)
            proc.wait(timeout=60)
            results[f"{key}_runs"] += 1
            if sig == signal.SIGTERM:
                results["sigterm_exit_codes"][proc.returncode] += 1
                results["sigterm_leftovers"] += len(_temp_leftovers(work))
            else:
                subprocess.run(cmd, capture_output=True, timeout=120)  # the next run sweeps
                results["sigkill_leftovers_after_rerun"] += len(_temp_leftovers(work))
            for p in _temp_leftovers(work):
                shutil.rmtree(work / p, ignore_errors=True)
                (work / p).unlink(missing_ok=True)
    return results


# --- main ------------------------------------------------------------------------------------


def demo_models(demo: Path) -> dict[str, Path]:
    models = {kind: demo / f"{kind}.int8.onnx" for kind in KINDS}
    if not all(p.is_file() for p in models.values()):
        subprocess.run(["qtool", "demo", "--out", str(demo)], check=True)
    return models


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--demo", type=Path, default=Path("qtool-demo"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="commands run side by side")
    parser.add_argument("--commands", default=",".join(COMMANDS))
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a hang")
    parser.add_argument("--memory-gib", type=float, default=4.0, help="RLIMIT_AS per worker")
    parser.add_argument("--subprocess-cases", type=int, default=20)
    args = parser.parse_args()
    models = demo_models(args.demo)
    folder = Path(tempfile.mkdtemp(prefix="qtool-fuzz-"))
    bases = {kind: Base.make(kind, path, folder / "bases") for kind, path in models.items()}
    commands = [c for c in args.commands.split(",") if c]
    memory_limit = int(args.memory_gib * 2**30)
    started = time.perf_counter()
    from concurrent.futures import ThreadPoolExecutor

    results = {c: new_stats() for c in commands}
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(
                run_command,
                c,
                bases,
                args.cases,
                args.seed,
                str(folder),
                args.timeout,
                memory_limit,
                results,
            )
            for c in commands
        ]
        for f in futures:
            f.result()
    wall = time.perf_counter() - started
    sample = subprocess_sample(bases, args.seed, folder, args.subprocess_cases, args.timeout)
    report(results, sample, args, wall, memory_limit)
    shutil.rmtree(folder, ignore_errors=True)


def report(results, sample, args, wall, memory_limit) -> None:
    print(
        f"qtool fuzz: {args.cases} mutants of the demo's INT8 CNN and MLP (alternating), "
        f"seed {args.seed}; CPU: {cpu_model()}, {os.cpu_count()} CPUs; wall {wall:.0f} s"
    )
    head = [
        "command",
        "cases",
        "exit 0",
        "exit 1",
        "exit 2",
        "internal",
        "malformed accepted",
        "inputs changed",
        "hangs",
        "crashes",
        "multi-line",
        "peak RSS",
        "mean ms",
    ]
    print(" | ".join(head))
    total = Counter()
    for command, s in results.items():
        row = [
            command,
            s["cases"],
            s["exit"][0],
            s["exit"][1],
            s["exit"][2],
            s["internal"],
            s["accepted"],
            s["changed"],
            s["hangs"],
            s["crashes"],
            s["multiline"],
            f"{s['peak'] / 2**20:.0f} MiB",
            f"{1000 * s['seconds'] / max(s['cases'], 1):.0f}",
        ]
        print(" | ".join(str(v) for v in row))
        for key in ("cases", "internal", "accepted", "changed", "hangs", "crashes", "multiline"):
            total[key] += s[key]
    print(
        f"total: {dict(total)}; memory bound: RLIMIT_AS {memory_limit / 2**30:.1f} GiB per "
        "worker process"
    )
    for command, s in results.items():
        for key in ("internal", "accepted", "changed", "multiline"):
            for example in s[f"{key}_examples"]:
                print(f"  {command} {key}: case {example[0]} ({example[1]}): {example[2]}")
        if s["hang_cases"] or s["crash_cases"]:
            print(f"  {command} hangs at {s['hang_cases']}, crashes at {s['crash_cases']}")
        common = ", ".join(f"{m} x{n}" for m, n in s["messages"].most_common(6))
        print(f"  {command} exit-2 messages (first words): {common}")
    print(
        f"subprocess sample: {sample['runs']} runs, {sample['hangs']} hangs, "
        f"{len(sample['multiline'])} multi-line exit-2 errors, {sample['ort_log_lines']} "
        f"ONNX Runtime log lines; SIGTERM mid-write: {sample['sigterm_runs']} runs, exit "
        f"codes {dict(sample['sigterm_exit_codes'])}, {sample['sigterm_leftovers']} temp "
        f"leftovers; SIGKILL mid-write: {sample['sigkill_runs']} runs, "
        f"{sample['sigkill_leftovers_after_rerun']} leftovers after the next run"
    )
    for item in sample["multiline"][:5]:
        print(f"  multi-line: {item}")


if __name__ == "__main__":
    main()
