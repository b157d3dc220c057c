"""Training a zoo model on a data set spec: load splits, train, score the test split, save.

The recipe itself lives in qtool.models.trainer (torch, numpy arrays in); this module joins it
to qtool's data sets, progress bars and file rules, for `qtool train` and `qtool demo`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from qtool import __version__
from qtool.data.datasets import load_dataset, parse_spec
from qtool.errors import QtoolError
from qtool.from_torch.resume import (
    RunSettings,
    architecture_from,
    check_same_data,
    data_sha256,
    load_resumable,
    settings_from,
)
from qtool.outputs import check_output_path
from qtool.report import LINE_SECONDS, info, progress


@dataclass
class TrainReport:
    """What `qtool train` prints and returns. `stopped` is why a run ended early ("time
    budget", "interrupted"); its checkpoint then holds `epochs_done` epochs and resumes."""

    model: str
    architecture: dict  # size, width, depth
    dataset: str
    out: str
    epochs: int
    seed: int
    best_epoch: int
    val_accuracy: float | None
    test_accuracy: float | None
    test_samples: int
    parameters: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    epochs_done: int = 0
    stopped: str | None = None
    resumed_from: str | None = None
    saved: bool = True  # False: stopped before its first epoch ended, nothing written
    signal: int | None = None  # the signal that interrupted it (2: Ctrl-C, 15: SIGTERM)
    lr: float | None = None
    batch_size: int | None = None
    threads: int | None = None

    @property
    def partial(self) -> bool:
        return self.stopped is not None


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after its checkpoint was made safe; `.report` is the partial
    report. A KeyboardInterrupt, so a caller that does not look for it stops as usual."""

    def __init__(self, report: TrainReport, signum: int):
        super().__init__("training interrupted")
        self.report = report
        self.signum = signum  # the CLI exits 128 + signum


def train_zoo_model(
    name: str,
    data_spec: str | None,
    out: str | Path | None,
    *,
    epochs: int | None = None,
    seed: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    time_budget: float | None = None,
    resume: str | Path | None = None,
    size: str | None = None,
    width: int | None = None,
    depth: int | None = None,
    force: bool = False,
    show_progress: bool = True,
) -> TrainReport:
    """Train zoo model `name` on `data_spec` (default: its own data set) and save a checkpoint.

    Normalisation comes from the train split, model selection from the val split, and the
    reported accuracy from the test split, which training never sees. The checkpoint is
    written (atomically) after every epoch with what a resumed run needs; `resume` continues
    such a run with its recorded settings (`out` defaults to it). `time_budget` seconds:
    the run stops after the epoch that crosses it. Ctrl-C stops it too, keeping the last
    epoch's checkpoint; the time budget returns a partial report (`stopped`), Ctrl-C raises
    TrainingInterrupted carrying it.

    `size` picks a preset network (small, medium, large; default the model's first) and
    `width`/`depth` override its first-stage channels and blocks per stage (a resumed run
    keeps its recorded ones).
    """
    from qtool.models import get_spec
    from qtool.models.checkpoint import save_checkpoint

    spec = get_spec(name)
    given = RunSettings(data_spec, epochs, seed, lr, batch_size, threads)
    plan = _plan(spec, given, (size, width, depth), out, resume, force)
    _check_args(plan.given.data_spec, plan.given, time_budget)
    start = time.perf_counter()
    train, val, test = _splits(plan.given.data_spec)
    digest = data_sha256(train.x, train.y)
    if plan.checkpoint is not None:
        check_same_data(plan.checkpoint, digest, plan.resume)
    result, saved = _run(spec, plan, (train, val), digest, _deadline(start, time_budget),
                         show_progress)  # fmt: skip
    test_acc = _test_accuracy(result, test) if result.epochs_done else None
    config = dict(result.config)
    config.update(
        qtool_version=__version__,
        test_accuracy=test_acc,
        train_data_sha256=digest,
        train_seconds=round(result.seconds, 3),
        epochs_done=result.epochs_done,
    )
    if result.stopped is None:  # finished: the final checkpoint needs no resume state
        save_checkpoint(result.module.state_dict(), config, plan.out)
    report = _report(name, plan, result, config, test, saved[0] > 0 or result.stopped is None)
    report.seconds = time.perf_counter() - start
    if report.stopped == "interrupted":
        raise TrainingInterrupted(report, result.signum or 2)
    return report


@dataclass
class _Plan:
    """What a run writes and starts from: settings (recorded ones when resuming), network,
    output file and the checkpoint it continues."""

    given: RunSettings
    architecture: dict
    out: Path
    resume: Path | None = None
    checkpoint: dict | None = None


def _plan(spec, given: RunSettings, asked_arch: tuple, out, resume, force: bool) -> _Plan:
    checkpoint = None
    if resume is not None:
        resume = Path(resume)
        checkpoint = load_resumable(resume, spec.name)
        checkpoint["path"] = str(resume)
        given = settings_from(checkpoint, given, resume)
        architecture = architecture_from(spec, checkpoint, asked_arch, resume)
        out = resume if out is None else out
    else:
        architecture = spec.architecture(*asked_arch)
    if out is None:
        raise QtoolError("give the checkpoint file to write", param="out")
    given = replace(given, data_spec=given.data_spec or spec.default_data)
    if resume is None or Path(out).resolve() != resume.resolve():
        out = check_output_path(out, force=force, inputs=(resume,), param="out")
    return _Plan(given, architecture, Path(out), resume, checkpoint)


def _report(name: str, plan: _Plan, result, config: dict, test, saved: bool) -> TrainReport:
    return TrainReport(
        model=name,
        architecture=plan.architecture,
        dataset=str(plan.given.data_spec),
        out=str(plan.out),
        epochs=int(config["epochs"]),
        seed=int(config["seed"]),
        best_epoch=int(config["best_epoch"]),
        val_accuracy=config["val_accuracy"],
        test_accuracy=config["test_accuracy"],
        test_samples=0 if test is None else len(test),
        parameters=sum(int(p.numel()) for p in result.module.parameters()),
        seconds=0.0,
        history=[vars(h) for h in result.history],
        epochs_done=result.epochs_done,
        stopped=result.stopped,
        resumed_from=str(plan.resume) if plan.resume is not None else None,
        saved=saved,
        lr=config["lr"],
        batch_size=config["batch_size"],
        threads=config["threads"],
        signal=result.signum,
    )


def _deadline(start: float, budget: float | None):
    """True once `budget` seconds have passed since `start` (never without a budget)."""
    return lambda: budget is not None and time.perf_counter() - start >= budget


def _check_args(data_spec: str, given: RunSettings, time_budget: float | None) -> None:
    if parse_spec(data_spec).split is not None:
        raise QtoolError(
            f"data set {data_spec!r} names a split; training uses train/val/test itself: "
            "drop the :split suffix",
            param="data_spec",
        )
    for name in ("epochs", "batch_size", "threads"):
        value = getattr(given, name)
        if value is not None and value < 1:
            raise QtoolError(f"{name} must be at least 1, got {value}", param=name)
    if given.lr is not None and not given.lr > 0:
        raise QtoolError(f"the learning rate must be positive, got {given.lr}", param="lr")
    if time_budget is not None and time_budget < 0:
        raise QtoolError("the time budget must be zero or more seconds", param="time_budget")


def _splits(data_spec: str):
    """(train, val, test) of a labelled data set; test is None when it has none."""
    train = load_dataset(data_spec, "train")
    val = load_dataset(data_spec, "val")
    if train.y is None or val.y is None:
        raise QtoolError(
            f"data set {data_spec} has no labels; training needs labelled splits",
            param="data_spec",
        )
    try:
        test = load_dataset(data_spec, "test")
    except QtoolError:
        test = None
    return train, val, test


def _run(spec, plan: _Plan, splits, digest: str, expired, show_progress: bool):
    """The training engine on the splits, writing the checkpoint after every epoch; progress
    is a bar on a terminal and otherwise a line for the first and last epoch and for any in
    between at most every LINE_SECONDS (a 40-epoch MLP in a CI log is two lines, a
    ResNet at 16 s per epoch a line each). Returns (result, [epochs saved])."""
    from qtool.models.checkpoint import save_checkpoint
    from qtool.models.trainer import train as run_training

    train, val = splits
    given, checkpoint, out = plan.given, plan.checkpoint, plan.out
    same_file = checkpoint is not None and out.resolve() == Path(checkpoint["path"]).resolve()
    saved = [checkpoint["resume"]["epoch"] if same_file else 0]  # epochs the file on disk holds
    interactive = show_progress and sys.stderr.isatty()
    with progress() if interactive else contextlib.nullcontext() as bar:
        epochs = given.epochs or spec.epochs
        task = bar.add_task(f"train {spec.name}", total=epochs, status="") if bar else None
        if bar and checkpoint is not None:
            bar.update(task, completed=checkpoint["resume"]["epoch"])

        printed: list[float | None] = [None]  # when the last line was printed

        def on_epoch(stats, checkpoint_now) -> str | None:
            state = checkpoint_now()
            state["config"].update(
                train_data_sha256=digest, epochs_done=stats.epoch, qtool_version=__version__
            )
            save_checkpoint(state["state_dict"], state["config"], out, resume=state["resume"])
            saved[0] = stats.epoch
            status = (
                f"loss {stats.loss:.4f}  val acc {100 * stats.val_accuracy:.2f} %  "
                f"{stats.seconds:.2f} s/epoch"
            )
            now = time.monotonic()
            if bar is not None:
                bar.update(task, advance=1, status=status)
            elif show_progress and (
                printed[0] is None or stats.epoch == epochs or now - printed[0] >= LINE_SECONDS
            ):
                info(f"train {spec.name}: epoch {stats.epoch}/{epochs} {status}")
                printed[0] = now
            return "time budget" if expired() else None

        result = run_training(
            spec,
            train.x,
            train.y,
            val.x,
            val.y,
            class_names=train.class_names,
            dataset=given.data_spec,
            kind=train.kind,
            seed=0 if given.seed is None else given.seed,
            epochs=given.epochs,
            lr=given.lr,
            batch_size=given.batch_size,
            threads=given.threads,
            architecture=plan.architecture,
            resume=checkpoint,
            on_epoch=on_epoch,
        )
    return result, saved


def _test_accuracy(result, test) -> float | None:
    from qtool.models.trainer import predict

    if test is None or test.y is None or not len(test):
        return None
    scores = predict(result.module, test.x, result.config)
    return float(np.mean(np.argmax(scores, axis=1) == test.y))
