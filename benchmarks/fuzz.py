"""Hostile input, measured: mutated models and bundles through qtool's commands.

Each case is one mutant of the demo's INT8 CNN or MLP (alternating): a protobuf-field edit
(walked with ONNX's descriptors) or a raw-byte edit (1-3 stacked), or, every 25th case, one
of the issue's reproducers. inspect, eval, package, flip and predict (on a bundle whose
manifest vouches for the mutant, as an attacker with write access to an unsigned bundle
makes) run on every mutant; verify runs on the clean bundle with one manifest field replaced
or deleted (and, one case in four, a model byte flipped). Commands run in-process through
click's CliRunner, one worker process per command (so its peak memory is its own), each
under RLIMIT_AS, so runaway allocation shows as a MemoryError rather than the OOM killer;
a watchdog kills a worker silent for --timeout seconds (a hang) and restarts it at the next
case. Then real `qtool` processes: a sample of the cases (stderr one line on exit 2, no ONNX
Runtime log line), SIGTERM/SIGINT/SIGKILL mid-write of `package --ecc` (no leftovers; a
SIGKILL's swept by the next run), and races of two `flip --force` to one --out/--manifest.

Printed per command: cases, exit codes, internal errors, malformed models accepted (exit 0
on a model onnx or ONNX Runtime cannot load; for verify, exit 0 on a manifest whose sha256s
do not match the files), inputs changed, hangs, crashes, multi-line errors, peak RSS.

Run: python benchmarks/fuzz.py --cases 10000 [--demo qtool-demo] [--jobs 2] [--seed 0]
(builds the demo models with `qtool demo --out DEMO` when DEMO has none).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import mutants  # noqa: E402
from fuzz_processes import process_runs  # noqa: E402
from fuzzing import (  # noqa: E402
    COMMANDS,
    Base,
    json_paths,
    lies,
    malformed,
    run_case,
    with_field,
    write_case,
)

from qtool.machine import cpu_line  # noqa: E402

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


MANIFEST_VALUES = [None, True, -1, 0, 2**40, 1e308, "x", "../../etc/passwd", "0" * 64, [],
                   {}, [1, 2], {"file": "m.onnx"}, "[" * 50]  # fmt: skip


def verify_case(case: Path, base: Base, index: int, seed: int) -> tuple[bool, str]:
    """The clean bundle with one manifest field replaced or deleted (and, one case in four, a
    model byte flipped); returns whether its sha256s now lie about the files, and how."""
    rng = random.Random(seed * 1_000_003 + index)
    if case.exists():
        shutil.rmtree(case)
    shutil.copytree(base.bundle, case / "in" / "bundle")
    folder = case / "in" / "bundle"
    manifest = json.loads((folder / "manifest.json").read_text())
    path = rng.choice(json_paths(manifest))
    delete = rng.random() < 0.3
    edited = with_field(manifest, path, rng.choice(MANIFEST_VALUES), delete)
    (folder / "manifest.json").write_text(json.dumps(edited))
    how = f"{'delete' if delete else 'set'} {'.'.join(map(str, path))}"
    if index % 4 == 0:
        model = folder / manifest["model"]["file"]
        data = bytearray(model.read_bytes())
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        model.write_bytes(bytes(data))
        how += " + model bit"
    return lies(folder, edited), how


def worker(job: int, jobs: int, start: int, options: dict, conn) -> None:
    """Cases start, start + jobs, ... (those of this job): each mutant made and judged by the
    oracle once, then every command run on it in-process."""
    resource.setrlimit(resource.RLIMIT_AS, (options["memory_limit"],) * 2)
    from click.testing import CliRunner

    runner = CliRunner()
    bases, seed = options["bases"], options["seed"]
    clean = {kind: Path(base.model).read_bytes() for kind, base in bases.items()}
    case = Path(options["folder"]) / f"case-{job}"
    bundle_case = Path(options["folder"]) / f"case-{job}-verify"
    for index in range(start, options["cases"], jobs):
        kind = KINDS[index % 2]
        base = bases[kind]
        mutant, extra, how = make_mutant(index, seed, clean[kind])
        write_case(case, base, mutant, extra)
        verdict = malformed(case / "in" / "m.onnx")
        for command in options["commands"]:
            conn.send(("start", index, command))
            if command == "verify":
                lying, vhow = verify_case(bundle_case, base, index, seed)
                outcome = run_case(command, base, bundle_case, "lies" if lying else None, runner)
            else:
                outcome, vhow = run_case(command, base, case, verdict, runner), how
            first = outcome.stderr.strip().splitlines()[:1]
            conn.send(
                (
                    "done",
                    command,
                    index,
                    outcome.exit_code,
                    outcome.internal,
                    outcome.accepted_malformed,
                    bool(outcome.inputs_changed),
                    outcome.one_line,
                    first[0][:300] if first else "",
                    vhow,
                    outcome.seconds,
                )
            )
    conn.send(("peak", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
    conn.close()


def run_job(job: int, jobs: int, options: dict, results: dict, peaks: list) -> None:
    """One worker process over this job's cases; a worker silent for the timeout is killed
    (a hang, counted against the command it was running) and restarted at the next case."""
    start = job
    ctx = mp.get_context("fork")
    while start < options["cases"]:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker, args=(job, jobs, start, options, child))
        proc.start()
        child.close()
        current, command = start, options["commands"][0]
        while True:
            if not parent.poll(options["timeout"]):
                results[command]["hangs"] += 1
                results[command]["hang_cases"].append(current)
                proc.kill()
                proc.join()
                start = current + jobs
                break
            try:
                msg = parent.recv()
            except EOFError:  # the worker died (a crash in native code, the OOM killer)
                proc.join()
                results[command]["crashes"] += 1
                results[command]["crash_cases"].append((current, proc.exitcode))
                start = current + jobs
                break
            if msg[0] == "start":
                current, command = msg[1], msg[2]
            elif msg[0] == "done":
                record(results[msg[1]], msg[1:])
            else:
                peaks.append(msg[1])
                proc.join()
                return


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
        text = first.removeprefix("error: ")
        words = [w for w in text.split() if "/" not in w][:5]  # paths vary; the words do not
        stats["messages"][" ".join(words)] += 1


def new_stats() -> dict:
    stats = defaultdict(int)
    stats.update(exit=Counter(), messages=Counter(), hang_cases=[], crash_cases=[], peak=0)
    for key in ("internal", "accepted", "changed", "multiline"):
        stats[f"{key}_examples"] = []
    return stats


# --- main ------------------------------------------------------------------------------------


def demo_models(demo: Path) -> dict[str, Path]:
    models = {kind: demo / f"{kind}.int8.onnx" for kind in KINDS}
    if not all(p.is_file() for p in models.values()):
        subprocess.run(["qtool", "demo", "--out", str(demo)], check=True)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--demo", type=Path, default=Path("qtool-demo"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="commands run side by side")
    parser.add_argument("--commands", default=",".join((*COMMANDS, "verify")))
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a hang")
    parser.add_argument("--memory-gib", type=float, default=4.0, help="RLIMIT_AS per worker")
    parser.add_argument("--subprocess-cases", type=int, default=20)
    args = parser.parse_args()
    models = demo_models(args.demo)
    folder = Path(tempfile.mkdtemp(prefix="qtool-fuzz-"))
    bases = {kind: Base.make(kind, path, folder / "bases") for kind, path in models.items()}
    commands = [c for c in args.commands.split(",") if c]
    options = {
        "bases": bases,
        "seed": args.seed,
        "cases": args.cases,
        "folder": str(folder),
        "commands": commands,
        "timeout": args.timeout,
        "memory_limit": int(args.memory_gib * 2**30),
    }
    started = time.perf_counter()
    results = {c: new_stats() for c in commands}
    peaks: list[int] = []
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(run_job, job, args.jobs, options, results, peaks)
            for job in range(args.jobs)
        ]
        for f in futures:
            f.result()
    wall = time.perf_counter() - started
    sample = process_runs(
        bases, make_mutant, args.seed, folder, args.subprocess_cases, args.timeout
    )
    report(results, sample, args, wall, options["memory_limit"], peaks)
    shutil.rmtree(folder, ignore_errors=True)


def report(results, sample, args, wall, memory_limit, peaks) -> None:
    print(
        f"qtool fuzz: {args.cases} mutants of the demo's INT8 CNN and MLP (alternating), "
        f"seed {args.seed}; CPU: {cpu_line()}; wall {wall:.0f} s"
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
        "peak RSS (process)",
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
            f"{sample['peak_rss'].get(command, 0) / 2**20:.0f} MiB",
            f"{1000 * s['seconds'] / max(s['cases'], 1):.0f}",
        ]
        print(" | ".join(str(v) for v in row))
        for key in ("cases", "internal", "accepted", "changed", "hangs", "crashes", "multiline"):
            total[key] += s[key]
    print(
        f"total: {dict(total)}; in-process workers ran under RLIMIT_AS "
        f"{memory_limit / 2**30:.1f} GiB each, peak RSS {max(peaks, default=0) / 2**20:.0f} MiB "
        f"(all commands, {args.cases} cases); peak RSS column: the largest real `qtool` "
        "process of that command in the sample below"
    )
    for command, s in results.items():
        for key in ("internal", "accepted", "changed", "multiline"):
            for example in s[f"{key}_examples"]:
                print(f"  {command} {key}: case {example[0]} ({example[1]}): {example[2]}")
        if s["hang_cases"] or s["crash_cases"]:
            print(f"  {command} hangs at {s['hang_cases']}, crashes at {s['crash_cases']}")
        common = ", ".join(f"{m} x{n}" for m, n in s["messages"].most_common(6))
        print(f"  {command} exit-2 messages (first words): {common}")
    sig = sample["signals"]
    print(
        f"real processes: {sample['runs']} runs of sampled mutants, {sample['hangs']} hangs, "
        f"{sample['internal']} internal errors, {len(sample['multiline'])} multi-line exit-2 "
        f"errors, {sample['ort_log_lines']} ONNX Runtime log lines"
    )
    codes = ", ".join(f"{name} -> {code}: {n}" for (name, code), n in sample["exit_codes"].items())
    print(
        f"signals mid-write of package --ecc ({dict(sig)}): exit codes {codes}; temp files or "
        f"staging folders left: {dict(sample['leftovers'])} (SIGKILL: after the next run)"
    )
    print(
        f"races of two flip --force to one --out/--manifest: {sample['race_mismatches']} of "
        f"{sample['race_rounds']} rounds with a manifest describing the other model"
    )
    for item in sample["multiline"][:5]:
        print(f"  multi-line: {item}")


if __name__ == "__main__":
    main()
