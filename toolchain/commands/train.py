"""`qtool train`: train a zoo model on a data set and save a weights-only checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from qtool.commands.options import check_outputs, force_option, json_option, write_json_report
from qtool.from_torch.train import TrainingInterrupted, TrainReport, train_zoo_model
from qtool.report import fmt_count, fmt_pct, info, show, table

ZOO_NAMES = ("cnn", "sasa", "resnet18", "mlp")  # mirrors qtool.models.ZOO (click needs them)
SIZE_NAMES = ("small", "medium", "large")  # mirrors qtool.models.registry.SIZES


@click.command("train")
@click.argument("model_name", metavar="MODEL", type=click.Choice(ZOO_NAMES))
@click.option(
    "--data",
    "data_spec",
    default=None,
    help="Data set spec (default: the model's own: digits for cnn/sasa, breast-cancer for mlp).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint file to write (.pt), after every epoch (default with --resume: that file).",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Epochs (default: per model)."
)
@click.option("--seed", type=int, default=None, help="Seed for init and shuffles (default 0).")
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Peak learning rate of the one-cycle schedule (default: per model).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Samples per training step (default: per model, 64).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="torch threads (default 1: weights then do not depend on the core count; the same "
    "thread count gives the same weights).",
)
@click.option(
    "--time-budget",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Stop after the epoch that crosses this many seconds; the checkpoint is kept "
    "(partial) and --resume continues it.",
)
@click.option(
    "--resume",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="CHECKPOINT",
    help="Continue the unfinished run in CHECKPOINT with its recorded settings; it ends with "
    "the weights the uninterrupted run would have.",
)
@click.option(
    "--size",
    type=click.Choice(SIZE_NAMES),
    default=None,
    help="Network size: small (the demo's; default for cnn, sasa), medium (cnn ~4.9 M, sasa "
    "~1.8 M parameters), large (cnn ~11 M, sasa ~3.9 M; resnet18's default).",
)
@click.option(
    "--width",
    type=click.IntRange(min=1),
    default=None,
    help="Channels of the first stage (mlp: hidden units); overrides the size's. At most 512.",
)
@click.option(
    "--depth",
    type=click.IntRange(min=1),
    default=None,
    help="Residual blocks per stage (mlp: hidden layers); overrides the size's. At most 8.",
)
@force_option
@json_option
def command(
    model_name, data_spec, out, epochs, seed, lr, batch_size, threads, time_budget, resume,
    size, width, depth, force, json_path,
) -> None:  # fmt: skip
    """Train zoo MODEL (cnn, sasa, resnet18 or mlp) and save a checkpoint (weights + config).

    Deterministic for a seed. Normalisation is computed on the train split, the epoch with the
    best validation accuracy is kept, and the test split (never trained on) gives the final
    accuracy. The checkpoint records the size, width and depth, and is loaded weights-only by
    qtool export, which rebuilds the same network.

    The checkpoint is rewritten (atomically) after every epoch with the optimiser, schedule
    and random state, so a run stopped by --time-budget or Ctrl-C (exit 130) keeps its epochs
    and `--resume` continues it to exactly the weights of an uninterrupted run.

    \b
    Examples:
      qtool train cnn --out cnn.pt
      qtool train sasa --data digits --epochs 20 --seed 1 --out sasa.pt
      qtool train sasa --size medium --data synthetic:lesion:64 --epochs 5 --out sasa-m.pt
      qtool train resnet18 --data npz:pneumoniamnist_64.npz --time-budget 3600 --out r18.pt
      qtool train cnn --resume cnn.pt
    """
    if out is None and resume is None:
        raise click.UsageError("Missing option '--out' (or --resume CHECKPOINT to continue).")
    continuing = resume is not None and (out is None or out.resolve() == resume.resolve())
    check_outputs(force, [resume], out=None if continuing else out, json_path=json_path)
    try:
        report = train_zoo_model(
            model_name, data_spec, out, epochs=epochs, seed=seed, lr=lr, batch_size=batch_size,
            threads=threads, time_budget=time_budget, resume=resume, size=size, width=width,
            depth=depth, force=force,
        )  # fmt: skip
    except TrainingInterrupted as stop:  # the checkpoint is safe: say so, then exit 130
        _show(stop.report, json_path)
        raise
    _show(report, json_path)


def _show(report: TrainReport, json_path) -> None:
    show(_table(report))
    write_json_report(json_path, {**vars(report), "partial": report.partial})
    if report.partial:
        info(_stopped_line(report))


def _stopped_line(report: TrainReport) -> str:
    why = {"time budget": "time budget reached"}.get(report.stopped, "interrupted")
    if report.signal not in (None, 2):
        why = f"terminated (signal {report.signal})"
    if not report.saved:
        return f"{why} before the first epoch ended: nothing written to {report.out}"
    return (
        f"partial: {why} after epoch {report.epochs_done} of {report.epochs}; {report.out} "
        f"holds them: continue with qtool train {report.model} --resume {report.out}"
    )


def _table(report: TrainReport):
    done = f"{report.epochs_done} of {report.epochs}"
    if report.partial:
        done += f" (PARTIAL: {report.stopped})"
    seconds = [h["seconds"] for h in report.history if h.get("seconds")]
    per_epoch = f", {sum(seconds) / len(seconds):.1f} s per epoch" if seconds else ""
    return table(
        f"trained {report.model} on {report.dataset}",
        ["property", "value"],
        [
            ["checkpoint", report.out if report.saved else "not written"],
            ["resumed from", report.resumed_from or "-"],
            ["size (width, depth)", _architecture(report.architecture)],
            ["parameters", f"{fmt_count(report.parameters)} ({report.parameters})"],
            ["epochs done", done],
            ["best epoch", report.best_epoch],
            ["seed / lr / batch / threads",
             f"{report.seed} / {report.lr:g} / {report.batch_size} / {report.threads}"],
            ["val accuracy", fmt_pct(report.val_accuracy)],
            [
                f"test accuracy ({report.test_samples} samples)",
                fmt_pct(report.test_accuracy) or "no test split",
            ],
            ["time", f"{report.seconds:.1f} s{per_epoch}"],
        ],
    )  # fmt: skip


def _architecture(arch: dict) -> str:
    return f"{arch['size']} ({arch['width']}, {arch['depth']})"
