"""Fault campaigns: accuracy of a model as more and more stored bits are flipped.

Each model is held as one bytearray. A trial draws its bits, XORs them in, builds an ONNX
Runtime session from the bytes, scores the (once-prepared) test inputs, and XORs the same
bits back, so the model is never re-serialised and never re-read. Every trial's bits come
from its own seed (seed, model sha256, budget, trial), so results do not depend on the
number of worker processes or on the order in which trials run.
"""

from __future__ import annotations

import csv
import hashlib
import io as _io
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from qtool.data.datasets import Dataset, load_dataset
from qtool.errors import QtoolError
from qtool.evaluation.evaluate import ModelIO, model_io, run_scores
from qtool.faults.flip import (
    BitSpace,
    FlipSettings,
    ModelFiles,
    Target,
    bit_space,
    draw_flips,
    prepare_bytes,
    read_model_files,
    select_targets,
    xor_flips,
)
from qtool.modelfile.metadata import qtool_metadata
from qtool.outputs import atomic_path, atomic_write
from qtool.report import fmt_pct, progress, table
from qtool.runtimes import make_session

# Trials run the model as a server would: ONNX Runtime's default (all optimisations), so a
# flipped int8 weight goes through the same fused QLinearConv kernels as in deployment. It is
# also the fastest on the zoo's INT8 CNN (7.4 ms per trial vs 33.5 ms with "basic", where the
# QDQ pairs stay unfused); benchmarks/flip.py measures each level.
DEFAULT_OPT_LEVEL = "all"
BOOTSTRAP_RESAMPLES = 2000
CI_METHOD = f"percentile bootstrap of the mean, {BOOTSTRAP_RESAMPLES} resamples"
COLLAPSE_MARGIN = 0.05


# --- one model, in memory --------------------------------------------------------------------


def inline_bytes(files: ModelFiles) -> bytearray:
    """The model with external data pulled inside (done once; campaigns need one buffer)."""
    if not files.external:
        return bytearray(files.main)
    model = onnx.ModelProto.FromString(bytes(files.main))
    onnx.external_data_helper.load_external_data_for_model(model, str(files.path.parent))
    return bytearray(model.SerializeToString())


@dataclass
class Scores:
    pred: np.ndarray
    nonfinite: np.ndarray  # rows with any NaN/Inf score


def predict(session, io: ModelIO, x: np.ndarray) -> Scores:
    scores = run_scores(session, io, x, batch=max(1, min(len(x), 1024)))
    nonfinite = ~np.isfinite(scores).all(axis=1)
    pred = np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=1)
    return Scores(pred, nonfinite)


@dataclass
class PreparedModel:
    """Everything a trial needs, built once per model (per process)."""

    path: str
    sha256: str
    key: int
    buf: bytearray
    targets: list[Target]
    space: BitSpace
    io: ModelIO
    x: np.ndarray
    clean: Scores
    converted: list[str]
    opt_level: str
    threads: int

    def session(self, data: bytes | bytearray | None = None):
        return make_session(
            bytes(self.buf if data is None else data),
            threads=self.threads,
            opt_level=self.opt_level,
            spinning=False,
        )


def prepare_model(
    path: str | Path,
    data: Dataset,
    settings: FlipSettings,
    opt_level: str = DEFAULT_OPT_LEVEL,
    threads: int = 1,
) -> PreparedModel:
    files = read_model_files(path)
    sha = files.sha256()[""]
    inline = ModelFiles(Path(path), inline_bytes(files))
    targets = select_targets(inline.main, settings.targets, settings.layers, settings.positions)
    targets, converted, _ = prepare_bytes(inline, targets, settings.positions)
    if not targets:
        raise QtoolError(
            f"{path}: no eligible bits for targets={settings.targets}, "
            f"positions={settings.positions}"
        )
    space = bit_space(targets, inline.buffers(), settings.fault)
    meta = qtool_metadata(onnx.ModelProto.FromString(bytes(inline.main)))
    model = PreparedModel(
        path=str(path),
        sha256=sha,
        key=int(sha[:15], 16),
        buf=inline.main,
        targets=targets,
        space=space,
        io=None,  # type: ignore[arg-type]
        x=np.zeros(0),
        clean=None,  # type: ignore[arg-type]
        converted=converted,
        opt_level=opt_level,
        threads=threads,
    )
    session = model.session()
    model.io = model_io(session, meta)
    model.x = model.io.prepare(data.x)
    model.clean = predict(session, model.io, model.x)
    return model


@dataclass
class TrialResult:
    model: int
    bits: int
    trial: int
    accuracy: float
    sdc_rate: float  # clean-correct inputs now wrong with finite scores
    nonfinite_rows: int  # inputs whose scores contain NaN/Inf
    error: str | None = None


def trial_rng(seed: int, model_key: int, bits: int, trial: int) -> np.random.Generator:
    return np.random.default_rng([seed, model_key, bits, trial])


def run_trial(
    model: PreparedModel, index: int, y: np.ndarray, bits: int, trial: int, seed: int
) -> TrialResult:
    """Flip, build a session from the bytes, score, flip back (always, even on failure)."""
    rng = trial_rng(seed, model.key, bits, trial)
    buffers = {None: model.buf}
    flips = draw_flips(model.space, bits, rng, buffers)
    xor_flips(buffers, model.targets, flips)
    try:
        session = model.session()
        scores = predict(session, model.io, model.x)
    except Exception as exc:  # a flipped model ONNX Runtime refuses: counted, not fatal
        return TrialResult(index, bits, trial, 0.0, 0.0, 0, str(exc).splitlines()[0][:200])
    finally:
        xor_flips(buffers, model.targets, flips)
    clean_ok = model.clean.pred == y
    wrong = (scores.pred != y) & ~scores.nonfinite
    sdc = float((clean_ok & wrong).sum() / max(1, clean_ok.sum()))
    return TrialResult(
        index, bits, trial, float((scores.pred == y).mean()), sdc, int(scores.nonfinite.sum())
    )


# --- worker processes ------------------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(
    paths: list[str], data_spec: str, split: str | None, settings: FlipSettings, opt_level: str
) -> None:
    data = load_dataset(data_spec, split)
    _WORKER["y"] = data.y
    _WORKER["seed"] = settings.seed
    _WORKER["models"] = [prepare_model(p, data, settings, opt_level) for p in paths]


def _work(task: tuple[int, int, int]) -> TrialResult:
    m, bits, trial = task
    return run_trial(_WORKER["models"][m], m, _WORKER["y"], bits, trial, _WORKER["seed"])


# --- results ---------------------------------------------------------------------------------


@dataclass
class ModelInfo:
    path: str
    sha256: str
    clean_accuracy: float
    eligible_bits: int
    eligible_tensors: int
    converted_to_raw_data: list[str]


@dataclass
class BudgetStats:
    model: str
    bits: int
    trials: int
    mean: float
    std: float
    min: float
    median: float
    max: float
    ci95_low: float
    ci95_high: float
    collapsed_fraction: float  # trials at or below chance + 5 pp
    nonfinite_trials: int  # trials with any NaN/Inf output
    sdc_rate: float  # mean over trials
    errors: int  # trials whose flipped model ONNX Runtime refused


@dataclass
class CampaignResult:
    data: str
    split: str
    samples: int
    chance: float  # accuracy of always answering the most common class
    seed: int
    targets: str
    positions: str
    fault: str
    layers: str | None
    trials: int
    budgets: list[int]
    workers: int
    opt_level: str
    seconds: float
    trials_per_second: float
    ci_method: str = CI_METHOD
    models: list[ModelInfo] = field(default_factory=list)
    stats: list[BudgetStats] = field(default_factory=list)
    trial_results: list[TrialResult] = field(default_factory=list)


def budget_stats(
    name: str, bits: int, results: list[TrialResult], chance: float, seed: int
) -> BudgetStats:
    acc = np.array([r.accuracy for r in results], dtype=np.float64)
    rng = np.random.default_rng([seed, 0xB0075, bits])
    if len(acc) > 1:
        means = acc[rng.integers(0, len(acc), size=(BOOTSTRAP_RESAMPLES, len(acc)))].mean(axis=1)
        low, high = np.percentile(means, [2.5, 97.5])
    else:
        low = high = float(acc.mean())
    return BudgetStats(
        model=name,
        bits=bits,
        trials=len(acc),
        mean=float(acc.mean()),
        std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
        min=float(acc.min()),
        median=float(np.median(acc)),
        max=float(acc.max()),
        ci95_low=float(low),
        ci95_high=float(high),
        collapsed_fraction=float((acc <= chance + COLLAPSE_MARGIN + 1e-12).mean()),
        nonfinite_trials=sum(r.nonfinite_rows > 0 for r in results),
        sdc_rate=float(np.mean([r.sdc_rate for r in results])),
        errors=sum(r.error is not None for r in results),
    )


def parse_budgets(spec: str | list[int] | tuple[int, ...]) -> list[int]:
    if isinstance(spec, (list, tuple)):
        values = [int(v) for v in spec]
    else:
        try:
            values = [int(v) for v in str(spec).split(",") if v.strip()]
        except ValueError as exc:
            raise QtoolError(f"bad --bits {spec!r}: give counts like 20 or 1,2,5,10,20") from exc
    if not values or any(v < 0 for v in values):
        raise QtoolError(f"bad --bits {spec!r}: give non-negative counts like 1,2,5,10,20")
    return sorted(set(values))


def run_campaign(
    models: list[Path | str],
    budgets: list[int] | str,
    trials: int,
    data_spec: str,
    seed: int = 0,
    workers: int = 1,
    targets: str = "weights",
    *,
    layers: str | None = None,
    positions: str = "any",
    fault: str = "flip",
    split: str | None = None,
    opt_level: str = DEFAULT_OPT_LEVEL,
    show_progress: bool = True,
) -> CampaignResult:
    """Accuracy vs number of flipped bits for each model; see the module docstring."""
    budgets = parse_budgets(budgets)
    if trials < 1:
        raise QtoolError("--trials must be at least 1")
    if workers < 1:
        raise QtoolError("--workers must be at least 1")
    if not models:
        raise QtoolError("give at least one model")
    settings = FlipSettings(
        seed=seed, targets=targets, layers=layers, positions=positions, fault=fault
    )
    data = load_dataset(data_spec, split)
    if data.y is None:
        raise QtoolError(f"data set {data_spec} has no labels; campaigns score accuracy")
    paths = [str(p) for p in models]
    prepared = [prepare_model(p, data, settings, opt_level) for p in paths]
    for p in prepared:
        if max(budgets) > p.space.total:
            raise QtoolError(
                f"--bits {max(budgets)} is more than the {p.space.total} eligible bits of "
                f"{p.path}; lower the budget or widen the selection"
            )
    counts = np.bincount(data.y)
    chance = float(counts.max() / counts.sum())
    tasks = [(m, b, t) for m in range(len(paths)) for b in budgets for t in range(trials)]
    results: list[TrialResult] = []
    start = time.perf_counter()
    with progress() as bar:
        task_id = bar.add_task("flip trials", total=len(tasks), status="")
        if not show_progress:
            bar.update(task_id, visible=False)
        if workers == 1:
            for m, b, t in tasks:
                results.append(run_trial(prepared[m], m, data.y, b, t, seed))
                bar.update(task_id, advance=1, status=f"{Path(paths[m]).name} {b} bits")
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(
                workers,
                initializer=_init_worker,
                initargs=(paths, data_spec, split, settings, opt_level),
            ) as pool:
                for r in pool.imap_unordered(
                    _work, tasks, chunksize=max(1, len(tasks) // (workers * 16))
                ):
                    results.append(r)
                    bar.update(task_id, advance=1, status=f"{r.bits} bits")
    seconds = time.perf_counter() - start
    results.sort(key=lambda r: (r.model, r.bits, r.trial))
    stats = []
    for m, p in enumerate(paths):
        for b in budgets:
            chunk = [r for r in results if r.model == m and r.bits == b]
            stats.append(budget_stats(p, b, chunk, chance, seed))
    infos = [
        ModelInfo(
            path=p.path,
            sha256=p.sha256,
            clean_accuracy=float((p.clean.pred == data.y).mean()),
            eligible_bits=p.space.total,
            eligible_tensors=len(p.targets),
            converted_to_raw_data=p.converted,
        )
        for p in prepared
    ]
    return CampaignResult(
        data=data.spec,
        split=data.split,
        samples=len(data.y),
        chance=chance,
        seed=seed,
        targets=targets,
        positions=positions,
        fault=fault,
        layers=layers,
        trials=trials,
        budgets=budgets,
        workers=workers,
        opt_level=opt_level,
        seconds=seconds,
        trials_per_second=len(tasks) / seconds if seconds > 0 else 0.0,
        models=infos,
        stats=stats,
        trial_results=results,
    )


# --- rendering -------------------------------------------------------------------------------


def campaign_table(result: CampaignResult):
    """The campaign as a rich table: one row per model and budget."""
    clean = {m.path: m.clean_accuracy for m in result.models}
    rows = []
    for s in result.stats:
        rows.append(
            [
                Path(s.model).name,
                s.bits,
                fmt_pct(clean[s.model], 1),
                fmt_pct(s.mean, 1),
                fmt_pct(s.std, 1),
                fmt_pct(s.min, 1),
                fmt_pct(s.median, 1),
                fmt_pct(s.max, 1),
                f"{100 * s.ci95_low:.1f}-{100 * s.ci95_high:.1f} %",
                fmt_pct(s.collapsed_fraction, 0),
                fmt_pct(s.sdc_rate, 2),
                s.nonfinite_trials,
            ]
        )
    title = (
        f"bit-flip campaign: {result.trials} trials per budget, {result.data} "
        f"({result.split}, {result.samples} samples), targets={result.targets}, "
        f"positions={result.positions}, fault={result.fault}, seed={result.seed}; "
        f"95 % CI: {result.ci_method}; collapsed: accuracy <= chance "
        f"({100 * result.chance:.1f} %) + 5 pp"
    )
    return table(
        title,
        [
            "model",
            "bits",
            "clean",
            "mean",
            "std",
            "min",
            "median",
            "max",
            "95 % CI",
            "collapsed",
            "SDC rate",
            "NaN/Inf trials",
        ],
        rows,
    )


def campaign_csv(result: CampaignResult) -> str:
    buf = _io.StringIO()
    names = list(BudgetStats.__dataclass_fields__)
    writer = csv.writer(buf)
    writer.writerow(names)
    for s in result.stats:
        writer.writerow([getattr(s, n) for n in names])
    return buf.getvalue()


def campaign_plot(result: CampaignResult, out: str | Path) -> Path:
    """Mean accuracy vs flipped bits (min-max band), one line per model, chance dashed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise QtoolError("--plot needs matplotlib: pip install 'qtool[plot]'") from exc
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for m in result.models:
        rows = [s for s in result.stats if s.model == m.path]
        x = [max(s.bits, 0.5) for s in rows]
        ax.plot(x, [100 * s.mean for s in rows], marker="o", label=Path(m.path).name)
        ax.fill_between(x, [100 * s.min for s in rows], [100 * s.max for s in rows], alpha=0.15)
    ax.axhline(100 * result.chance, color="grey", linestyle="--", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("flipped bits")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{result.data}: {result.trials} trials per budget (band: min-max)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return Path(out)


def write_csv(result: CampaignResult, out: str | Path) -> Path:
    return atomic_write(out, campaign_csv(result))


def model_key(data: bytes) -> int:
    return int(hashlib.sha256(data).hexdigest()[:15], 16)


# --- one injection, evaluated ----------------------------------------------------------------


@dataclass
class FlipEvaluation:
    data: str
    split: str
    samples: int
    clean_accuracy: float
    flipped_accuracy: float
    sdc_rate: float  # of the inputs the clean model gets right, now wrong with finite scores
    sdc_inputs: int
    clean_correct: int
    nonfinite_rows: int  # flipped-model inputs with NaN/Inf scores
    clean_nonfinite_rows: int


def evaluate_manifest(
    path: str | Path,
    manifest: dict,
    data_spec: str,
    split: str | None = None,
    opt_level: str = DEFAULT_OPT_LEVEL,
) -> FlipEvaluation:
    """Clean vs flipped accuracy of the manifest's flips, done in memory on `path`."""
    from qtool.faults.flip import entry_offset
    from qtool.modelfile.locate import locate_initializers

    data = load_dataset(data_spec, split)
    if data.y is None:
        raise QtoolError(f"data set {data_spec} has no labels to score against")
    settings = FlipSettings(
        targets=manifest["targets"],
        layers=manifest["layers"],
        positions=manifest["positions"],
        fault=manifest["fault"],
    )
    model = prepare_model(path, data, settings, opt_level, threads=0)
    by_key = {(loc.graph, loc.name): loc for loc in locate_initializers(model.buf)}
    flipped = bytearray(model.buf)
    for entry in manifest["flips"]:
        off, b = entry_offset(path, entry, by_key, inline=True)
        flipped[off] ^= 1 << b
    scores = predict(model.session(flipped), model.io, model.x)
    y = data.y
    clean_ok = model.clean.pred == y
    sdc = clean_ok & (scores.pred != y) & ~scores.nonfinite
    return FlipEvaluation(
        data=data.spec,
        split=data.split,
        samples=len(y),
        clean_accuracy=float(clean_ok.mean()),
        flipped_accuracy=float((scores.pred == y).mean()),
        sdc_rate=float(sdc.sum() / max(1, clean_ok.sum())),
        sdc_inputs=int(sdc.sum()),
        clean_correct=int(clean_ok.sum()),
        nonfinite_rows=int(scores.nonfinite.sum()),
        clean_nonfinite_rows=int(model.clean.nonfinite.sum()),
    )
