"""What every demo stage shares: the context passed through the stages, one record per
model, summary columns, the demo's settings and the checkpoint cache."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtool import __version__

DEFAULT_OUT = Path("qtool-demo")
SUMMARY_FILE = "summary.json"
# (record name, zoo model, data set): the CNN / self-attention pair of the seed paper on the
# same images, and a fully connected net on a medical table
DEMO_MODELS: list[tuple[str, str, str]] = [
    ("cnn", "cnn", "digits"),
    ("sasa", "sasa", "digits"),
    ("mlp", "mlp", "breast-cancer"),
]


@dataclass
class ModelRecord:
    """One model's way through the demo: files made and facts measured."""

    name: str
    model: str
    data: str
    paths: dict[str, Path] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoContext:
    out_dir: Path
    seed: int = 0
    force: bool = False
    cache_dir: Path | None = None
    records: dict[str, ModelRecord] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list]]] = field(default_factory=list)
    # draws a campaign's curve to a PNG (the flip command's plot; the library draws none)
    campaign_plot: Callable[[Any, Path], Path] | None = None


Stage = Callable[[DemoContext], None]


@dataclass(frozen=True)
class Column:
    """A summary-table column: header, the `record.results` key, and how to print it."""

    header: str
    key: str
    fmt: Callable[[Any], str] = str
    group: str = "model"  # which summary table: model, cpu (FP32 vs INT8), robustness


def fmt_ms(x: float) -> str:
    return f"{x:.3f}"


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}"


def cache_dir() -> Path:
    """$QTOOL_CACHE_DIR if set, else ~/.cache/qtool (XDG_CACHE_HOME honoured)."""
    env = os.environ.get("QTOOL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "qtool"


def checkpoint_cache_path(root: Path, spec, data: str, seed: int, epochs: int) -> Path:
    """Cache file for a zoo spec: model, data, seed, epochs, qtool version and a digest of
    the whole recipe (so changing a learning rate does not reuse a stale checkpoint)."""
    safe_data = re.sub(r"[^A-Za-z0-9_.-]+", "_", data)
    recipe = hashlib.sha256(repr(spec).encode()).hexdigest()[:8]
    name = f"{spec.name}-{safe_data}-seed{seed}-ep{epochs}-v{__version__}-{recipe}.pt"
    return root / "checkpoints" / name


def evaluate_test_split(path: Path, data: str):
    """Test-split accuracy of one ONNX file in ONNX Runtime, as `qtool eval` computes it."""
    from qtool.data.datasets import load_dataset
    from qtool.evaluation.evaluate import evaluate_session, model_io
    from qtool.modelfile.load import load_model
    from qtool.modelfile.metadata import qtool_metadata
    from qtool.runtimes import make_session

    session = make_session(path)
    io = model_io(session, qtool_metadata(load_model(path)))
    return evaluate_session(session, io, load_dataset(data, "test"))


# Demo settings of the later stages: small enough for < 5 min on 2 cores, large enough to
# show the effect. The full-size measurements live in benchmarks/.
DEMO_ACCURACY_BUDGET_PP = 1.0  # one breast-cancer test sample is 0.88 pp
DEMO_BENCH_BATCHES = [1, 32]
DEMO_BENCH_SECONDS = 1.5
DEMO_FLIP_BUDGETS = [1, 2, 5, 10, 20]
DEMO_FLIP_TRIALS = 50  # FP32 means are heavy-tailed (exponent-MSB hits); 20 gave noisy curves
DEMO_FLIP_MODELS = ("cnn", "mlp")  # convolutional vs fully connected, as in the BFA literature
DEMO_SEARCH_BITS = 20
DEMO_PACKAGE_MODEL = "cnn"
DEMO_PACKAGE_FLIPS = 3
