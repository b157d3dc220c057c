"""The part of benchmarks/fuzz.py that needs real `qtool` processes: stderr as a user sees
it, signals mid-write, and two processes racing to write one model/manifest pair."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from flip_models import large_mlp  # noqa: E402
from fuzzing import COMMANDS, argv, write_case  # noqa: E402

from qtool.outputs import TEMP_MARK  # noqa: E402

QTOOL = [sys.executable, "-m", "qtool.cli"]
KINDS = ("cnn", "mlp")


def process_runs(bases, make_mutant, seed: int, folder: Path, count: int, timeout: float):
    out = stderr_sample(bases, make_mutant, seed, folder, count, timeout)
    out.update(signal_runs(folder))
    out.update(races(bases["cnn"].model, folder))
    return out


def run_measured(cmd: list[str], timeout: float) -> tuple[int, str, int] | None:
    """(exit code, stderr, peak RSS in bytes) of one process, None when it outlives the
    timeout (it is killed): wait4 gives the child's own rusage."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                return None
            time.sleep(0.005)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return proc.returncode, err.read().decode(errors="replace"), usage.ru_maxrss * 1024


def stderr_sample(bases, make_mutant, seed, folder: Path, count: int, timeout: float) -> dict:
    """`count` mutants (other than the in-process ones) through every command as `qtool`
    processes: stderr as a user sees it, and each command's peak RSS."""
    out = {"runs": 0, "multiline": [], "hangs": 0, "ort_log_lines": 0, "internal": 0,
           "peak_rss": Counter()}  # fmt: skip
    clean = {kind: Path(base.model).read_bytes() for kind, base in bases.items()}
    case = folder / "subprocess-case"
    for index in range(count):
        kind = KINDS[index % 2]
        mutant, extra, how = make_mutant(10**6 + index, seed, clean[kind])
        write_case(case, bases[kind], mutant, extra)
        for command in (*COMMANDS, "verify"):
            shutil.rmtree(case / "out", ignore_errors=True)
            (case / "out").mkdir()
            done = run_measured([*QTOOL, *argv(command, bases[kind], case)], timeout)
            if done is None:
                out["hangs"] += 1
                continue
            code, stderr, rss = done
            out["runs"] += 1
            out["peak_rss"][command] = max(out["peak_rss"][command], rss)
            lines = stderr.strip().splitlines()
            out["internal"] += "internal error" in stderr or code not in (0, 1, 2)
            if code == 2 and len(lines) != 1:
                out["multiline"].append((command, how, lines[:3]))
            out["ort_log_lines"] += sum(":onnxruntime:" in ln for ln in lines)
    return out


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if TEMP_MARK in p.name]


def signal_runs(folder: Path, rounds: int = 6) -> dict:
    """SIGTERM, SIGINT and SIGKILL sent to `qtool package --ecc` of a 16 MB model once its
    staging folder exists; a SIGKILL's leftover must be gone after the next run."""
    work = folder / "signals"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    model = large_mlp(work / "big.onnx", megabytes=16)
    out = work / "bundle"
    cmd = [*QTOOL, "package", str(model), "--out", str(out), "--ecc", "--force"]
    results = {"signals": Counter(), "exit_codes": Counter(), "leftovers": Counter()}
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        name = signal.Signals(sig).name
        for _ in range(rounds):
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while not _leftovers(work) and proc.poll() is None:
                time.sleep(0.002)
            proc.send_signal(sig)
            proc.wait(timeout=120)
            results["signals"][name] += 1
            results["exit_codes"][(name, proc.returncode)] += 1
            if sig == signal.SIGKILL:
                subprocess.run(cmd, capture_output=True, timeout=600)  # the next run sweeps
            results["leftovers"][name] += len(_leftovers(work))
            for p in _leftovers(work):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()
    return results


def races(model: Path, folder: Path, rounds: int = 25) -> dict:
    """Two `flip --force` runs (seeds 1 and 2) to one --out/--manifest, started together:
    the manifest on disk must describe the model on disk."""
    work = folder / "races"
    work.mkdir(exist_ok=True)
    out, manifest = work / "f.onnx", work / "f.json"
    mismatches = 0
    for _ in range(rounds):
        procs = [
            subprocess.Popen(
                [
                    *QTOOL,
                    "flip",
                    str(model),
                    "--bits",
                    "3",
                    "--seed",
                    str(seed),
                    "--out",
                    str(out),
                    "--manifest",
                    str(manifest),
                    "--force",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            for seed in (1, 2)
        ]
        for p in procs:
            p.wait(timeout=300)
        recorded = json.loads(manifest.read_text())["flipped_sha256"]
        mismatches += recorded != hashlib.sha256(out.read_bytes()).hexdigest()
    return {"race_rounds": rounds, "race_mismatches": mismatches}
