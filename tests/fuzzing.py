"""Running one command on one hostile model, in-process, and judging the outcome.

Shared by the fuzz tests (tests/test_fuzz_*.py, a bounded number of hypothesis cases) and
the long run (benchmarks/fuzz.py --cases N). A case is: write the mutant (and, for predict,
a bundle whose manifest vouches for it, as an attacker with write access to an unsigned
bundle makes), hash every input, run the command through click's CliRunner, hash again.

An outcome is judged on the issue's counts:
- internal error: "internal error" on stderr, an exception escaping the CLI, or an exit
  code other than 0, 1, 2;
- malformed accepted: exit 0 on a model that onnx cannot parse or check, or ONNX Runtime
  cannot load (`malformed`, the oracle, uses onnx and onnxruntime directly);
- input changed: any input file's sha256 differs afterwards;
- not one line: an exit-2 failure whose stderr is not exactly one line (exit 1: at most one).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from click.testing import CliRunner

from qtool.cli import main

COMMANDS = ("inspect", "eval", "package", "flip", "predict")


def fuzz_settings(examples: int):
    """The hypothesis profile of the fuzz tests: a fixed number of derandomised cases, no
    deadline, no example database (hypothesis is imported here, not by benchmarks/fuzz.py)."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


DATA = {"cnn": "digits", "mlp": "breast-cancer"}


def malformed(path: Path) -> str | None:
    """Why onnx or ONNX Runtime refuses the model at `path`, or None when both load it."""
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:
        return f"onnx: {type(exc).__name__}"
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        return f"onnxruntime: {type(exc).__name__}"
    return None


@dataclass
class Outcome:
    command: str
    exit_code: int
    stderr: str
    seconds: float
    internal: bool = False
    accepted_malformed: bool = False
    inputs_changed: list[str] = field(default_factory=list)

    @property
    def one_line(self) -> bool:
        """Exit 2: exactly one stderr line; exit 1 (a check failed, e.g. verify's report on
        stdout): at most one."""
        lines = len(self.stderr.strip().splitlines())
        return {0: True, 1: lines <= 1, 2: lines == 1}.get(self.exit_code, False)


def digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@dataclass
class Base:
    """One clean model and what its cases need: its data set, a clean bundle, an input."""

    kind: str  # "cnn" (digits images) or "mlp" (breast-cancer table)
    model: Path
    bundle: Path
    sample: Path

    @classmethod
    def make(cls, kind: str, model: Path, folder: Path) -> Base:
        folder.mkdir(parents=True, exist_ok=True)
        bundle = folder / f"{kind}.bundle"
        if not bundle.exists():
            result = CliRunner().invoke(main, ["package", str(model), "--out", str(bundle)])
            assert result.exit_code == 0, result.output
        sample = folder / f"{kind}.sample.npz"
        shape = onnx.load(str(model)).graph.input[0].type.tensor_type.shape.dim
        dims = [d.dim_value or 1 for d in shape]
        rng = np.random.default_rng(0)
        if kind == "cnn":
            np.savez(sample, images=(rng.random((2, *dims[2:])) * 255).astype(np.uint8))
        else:
            np.savez(sample, x=rng.random((2, dims[-1])).astype(np.float32))
        return cls(kind, model, bundle, sample)


def argv(command: str, base: Base, case: Path) -> list[str]:
    model = str(case / "in" / "m.onnx")
    out = case / "out"
    return {
        "inspect": ["inspect", model],
        "eval": ["eval", model, "--data", DATA[base.kind]],
        "package": ["package", model, "--out", str(out / "bundle")],
        "flip": [
            "flip",
            model,
            "--bits",
            "3",
            "--out",
            str(out / "f.onnx"),
            "--manifest",
            str(out / "f.json"),
        ],
        "predict": ["predict", str(case / "in" / "bundle"), str(case / "in" / "x.npz")],
        "verify": ["verify", str(case / "in" / "bundle")],
    }[command]


def write_case(case: Path, base: Base, mutant: bytes, extra: dict[str, bytes] | None) -> None:
    """The mutant as in/m.onnx (with `extra` files beside it) and, inside a copy of the clean
    bundle, as its model file with the manifest's sha256 and size updated to vouch for it."""
    if case.exists():
        shutil.rmtree(case)
    inputs = case / "in"
    inputs.mkdir(parents=True)
    (case / "out").mkdir()
    (inputs / "m.onnx").write_bytes(mutant)
    shutil.copyfile(base.sample, inputs / "x.npz")
    bundle = inputs / "bundle"
    shutil.copytree(base.bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    model_file = manifest["model"]["file"]
    (bundle / model_file).write_bytes(mutant)
    manifest["files"][model_file] = {
        "sha256": hashlib.sha256(mutant).hexdigest(),
        "bytes": len(mutant),
    }
    for name, data in (extra or {}).items():
        (inputs / name).write_bytes(data)
        (bundle / name).write_bytes(data)
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        manifest["model"]["data_files"] = [*manifest["model"].get("data_files", []), name]
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def run_case(
    command: str, base: Base, case: Path, verdict: str | None, runner: CliRunner | None = None
) -> Outcome:
    """Run `command` on the case folder written by `write_case`; `verdict` is
    `malformed(case/in/m.onnx)`, computed once per mutant by the caller."""
    runner = runner or CliRunner()
    out = case / "out"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    before = digest(case / "in")
    start = time.perf_counter()
    result = runner.invoke(main, argv(command, base, case))
    seconds = time.perf_counter() - start
    stderr = result.stderr
    outcome = Outcome(command, result.exit_code, stderr, seconds)
    escaped = result.exception is not None and not isinstance(result.exception, SystemExit)
    outcome.internal = escaped or "internal error" in stderr or result.exit_code not in (0, 1, 2)
    if escaped and not stderr:
        outcome.stderr = f"{type(result.exception).__name__}: {result.exception}"
    outcome.accepted_malformed = result.exit_code == 0 and verdict is not None
    after = digest(case / "in")
    outcome.inputs_changed = sorted(k for k in before if before[k] != after.get(k))
    return outcome


def cli(*args) -> object:
    """Run `qtool ARGS...` in-process; returns click's Result (stdout, stderr, exit_code)."""
    return CliRunner().invoke(main, [str(a) for a in args])


def refused(result, code: int = 2, match: str | None = None) -> str:
    """Assert the run failed with `code` and exactly one stderr line (no traceback, no
    internal error); return that line."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    assert len(lines) == 1, result.stderr
    assert "internal error" not in lines[0] and "Traceback" not in result.stderr
    if match is not None:
        assert match in lines[0], lines[0]
    return lines[0]


# --- bundles: manifest edits -------------------------------------------------------------


def json_paths(value, prefix=()) -> list[tuple]:
    """Every key/index path into a JSON value (long lists sampled by their first items)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += json_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value[:3]):
            found += json_paths(item, (*prefix, i))
    return found


def with_field(manifest: dict, path: tuple, value, delete: bool = False) -> dict:
    """A copy of `manifest` with the field at `path` replaced by `value` (or deleted)."""
    out = json.loads(json.dumps(manifest))
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return out


def lies(folder: Path, manifest: object) -> bool:
    """True when a file the manifest lists has other bytes than its recorded sha256: verify
    must then never say intact."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        return False
    for rel, info in files.items():
        path = folder / str(rel)
        if isinstance(info, dict) and path.is_file():
            if hashlib.sha256(path.read_bytes()).hexdigest() != info.get("sha256"):
                return True
    return False
