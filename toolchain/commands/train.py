"""`qtool train`: train a zoo model on a data set and save a weights-only checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from qtool.commands.options import check_outputs, force_option, json_option, write_json_report
from qtool.from_torch.train import train_zoo_model
from qtool.report import fmt_count, fmt_pct, show, table

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
    required=True,
    help="Checkpoint file to write (.pt).",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Epochs (default: per model)."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for init and shuffles.")
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
def command(model_name, data_spec, out, epochs, seed, size, width, depth, force, json_path) -> None:
    """Train zoo MODEL (cnn, sasa, resnet18 or mlp) and save a checkpoint (weights + config).

    Deterministic for a seed. Normalisation is computed on the train split, the epoch with the
    best validation accuracy is kept, and the test split (never trained on) gives the final
    accuracy. The checkpoint records the size, width and depth, and is loaded weights-only by
    qtool export, which rebuilds the same network.

    \b
    Examples:
      qtool train cnn --out cnn.pt
      qtool train sasa --data digits --epochs 20 --seed 1 --out sasa.pt
      qtool train sasa --size medium --data synthetic:lesion:64 --epochs 5 --out sasa-m.pt
      qtool train resnet18 --data npz:pneumoniamnist_64.npz --out r18.pt
      qtool train mlp --data breast-cancer --out mlp.pt
    """
    check_outputs(force, [], out=out, json_path=json_path)
    report = train_zoo_model(
        model_name,
        data_spec,
        out,
        epochs=epochs,
        seed=seed,
        size=size,
        width=width,
        depth=depth,
        force=force,
    )
    show(
        table(
            f"trained {report.model} on {report.dataset}",
            ["property", "value"],
            [
                ["checkpoint", report.out],
                ["size (width, depth)", _architecture(report.architecture)],
                ["parameters", f"{fmt_count(report.parameters)} ({report.parameters})"],
                ["epochs (best)", f"{report.epochs} ({report.best_epoch})"],
                ["seed", report.seed],
                ["val accuracy", fmt_pct(report.val_accuracy)],
                [
                    f"test accuracy ({report.test_samples} samples)",
                    fmt_pct(report.test_accuracy) or "no test split",
                ],
                ["time", f"{report.seconds:.1f} s"],
            ],
        )
    )
    write_json_report(json_path, vars(report))


def _architecture(arch: dict) -> str:
    return f"{arch['size']} ({arch['width']}, {arch['depth']})"
