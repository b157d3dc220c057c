"""Training a zoo model on a data set spec: load splits, train, score the test split, save.

The recipe itself lives in qtool.models.trainer (torch, numpy arrays in); this module joins it
to qtool's data sets, progress bars and file rules, for `qtool train` and `qtool demo`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qtool import __version__
from qtool.data.datasets import load_dataset, parse_spec
from qtool.errors import QtoolError
from qtool.outputs import check_output_path
from qtool.report import progress


@dataclass
class TrainReport:
    """What `qtool train` prints and returns."""

    model: str
    architecture: dict  # size, width, depth
    dataset: str
    out: str
    epochs: int
    seed: int
    best_epoch: int
    val_accuracy: float
    test_accuracy: float | None
    test_samples: int
    parameters: int
    seconds: float
    history: list[dict] = field(default_factory=list)


def train_zoo_model(
    name: str,
    data_spec: str | None,
    out: str | Path,
    *,
    epochs: int | None = None,
    seed: int = 0,
    size: str | None = None,
    width: int | None = None,
    depth: int | None = None,
    force: bool = False,
    show_progress: bool = True,
) -> TrainReport:
    """Train zoo model `name` on `data_spec` (default: its own data set) and save a checkpoint.

    `size` picks a preset network (small, medium, large; default the model's first) and
    `width`/`depth` override its first-stage channels and blocks per stage. Normalisation
    comes from the train split, model selection from the val split, and the reported accuracy
    from the test split, which training never sees.
    """
    from qtool.models import get_spec
    from qtool.models.checkpoint import save_checkpoint

    spec = get_spec(name)
    architecture = spec.architecture(size, width, depth)
    data_spec = data_spec or spec.default_data
    _check_args(data_spec, epochs)
    out = check_output_path(out, force=force, param="out")
    start = time.perf_counter()
    train, val, test = _splits(data_spec)
    epochs_run = spec.epochs if epochs is None else epochs
    result = _run(spec, architecture, train, val, data_spec, seed, epochs_run, show_progress)
    test_acc = _test_accuracy(result, test)
    config = dict(result.config)
    config.update(
        qtool_version=__version__,
        test_accuracy=test_acc,
        train_seconds=round(result.seconds, 3),
    )
    save_checkpoint(result.module.state_dict(), config, out)
    params = sum(int(p.numel()) for p in result.module.parameters())
    return TrainReport(
        model=name,
        architecture=architecture,
        dataset=data_spec,
        out=str(out),
        epochs=epochs_run,
        seed=seed,
        best_epoch=int(config["best_epoch"]),
        val_accuracy=float(config["val_accuracy"]),
        test_accuracy=test_acc,
        test_samples=0 if test is None else len(test),
        parameters=params,
        seconds=time.perf_counter() - start,
        history=[vars(h) for h in result.history],
    )


def _check_args(data_spec: str, epochs: int | None) -> None:
    if parse_spec(data_spec).split is not None:
        raise QtoolError(
            f"data set {data_spec!r} names a split; training uses train/val/test itself: "
            "drop the :split suffix",
            param="data_spec",
        )
    if epochs is not None and epochs < 1:
        raise QtoolError(f"epochs must be at least 1, got {epochs}", param="epochs")


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


def _run(
    spec, architecture: dict, train, val, data_spec: str, seed: int, epochs: int, show_progress
):
    """The training engine on the splits, with a progress bar of loss, val accuracy and
    seconds per epoch."""
    from qtool.models.trainer import train as run_training

    with progress() as bar:
        task = bar.add_task(f"train {spec.name}", total=epochs, status="")

        def on_epoch(stats) -> None:
            bar.update(
                task,
                advance=1,
                status=(
                    f"loss {stats.loss:.4f}  val acc {100 * stats.val_accuracy:.2f} %  "
                    f"{stats.seconds:.1f} s/epoch"
                ),
            )

        return run_training(
            spec,
            train.x,
            train.y,
            val.x,
            val.y,
            class_names=train.class_names,
            dataset=data_spec,
            kind=train.kind,
            seed=seed,
            epochs=epochs,
            architecture=architecture,
            on_epoch=on_epoch if show_progress else None,
        )


def _test_accuracy(result, test) -> float | None:
    from qtool.models.trainer import predict

    if test is None or test.y is None or not len(test):
        return None
    scores = predict(result.module, test.x, result.config)
    return float(np.mean(np.argmax(scores, axis=1) == test.y))
