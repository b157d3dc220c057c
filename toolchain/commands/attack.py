"""`qtool attack`: lightweight black-box attacks on deployed ONNX models, FP32 vs INT8."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import click

from qtool.attacks.budget import NORMS
from qtool.attacks.methods import METHODS
from qtool.attacks.settings import (
    DEFAULT_MAX_SAMPLES,
    MAX_EPS_VALUES,
    MAX_K_VALUES,
    MAX_QUERIES,
    MAX_SEEDS,
    AttackSettings,
    SurrogateSpec,
)
from qtool.commands.attack_views import attack_plot, results_table
from qtool.commands.options import (
    check_outputs,
    cluster_options,
    cluster_spec,
    force_option,
    json_option,
    split_list,
    write_json_report,
)
from qtool.data.datasets import SPLITS
from qtool.report import info, progress, show


def parse_eps(text: str) -> list[float]:
    """'8/255,16/255' or '0.03' -> floats (fractions are exact before the division)."""
    out = []
    for item in split_list(text):
        try:
            value = float(Fraction(item))
        except (ValueError, ZeroDivisionError):
            raise click.BadParameter(
                f"{item!r} is not a number: give budgets like 8/255,16/255 or 0.03",
                param_hint="--eps",
            ) from None
        out.append(value)
    if not out:
        raise click.BadParameter("give at least one budget, like 8/255", param_hint="--eps")
    return out


def parse_k(text: str) -> list[int | None]:
    """'1,5,10,all' -> [1, 5, 10, None] (None: the whole train split)."""
    out: list[int | None] = []
    for item in split_list(text):
        if item.lower() == "all":
            out.append(None)
            continue
        try:
            out.append(int(item))
        except ValueError:
            raise click.BadParameter(
                f"{item!r}: give whole numbers or all, like 1,5,10,all",
                param_hint="--samples-per-class",
            ) from None
    return out


@click.command("attack")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", "data_spec", required=True, help="Image data set spec, e.g. digits.")
@click.option(
    "--samples-per-class",
    default="1,5,10,all",
    show_default=True,
    help=f"The attacker's labelled train images per class (K); 'all' = the train split. "
    f"At most {MAX_K_VALUES} values.",
)
@click.option(
    "--eps",
    default="8/255",
    show_default=True,
    help=f"Perturbation budgets in pixel units of [0, 1] images, e.g. 8/255,16/255 "
    f"(at most {MAX_EPS_VALUES}).",
)
@click.option("--norm", type=click.Choice(NORMS), default="linf", show_default=True)
@click.option(
    "--method",
    "methods",
    default="etf-i,etf-c,feature,pgd-transfer,square",
    show_default=True,
    help=f"Attacks, comma-separated: {', '.join(METHODS.names())}. The noise floor always runs.",
)
@click.option(
    "--surrogate",
    default="cnn",
    show_default=True,
    help="The attacker's network: a zoo name or path/to/file.py:build (your nn.Module).",
)
@click.option(
    "--feature-layer",
    default=None,
    help="Surrogate module whose output is the "
    "shallow feature (default: stage1 if present, else the first child).",
)
@click.option(
    "--surrogate-steps",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Optimiser steps training the surrogate on the attacker's samples.",
)
@click.option("--target-split", type=click.Choice(SPLITS), default="test", show_default=True)
@click.option(
    "--seeds",
    type=int,
    default=3,
    show_default=True,
    help=f"Repeats with seeds S..S+N-1 (attacker's samples, surrogate, random starts; "
    f"at most {MAX_SEEDS}).",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--queries",
    type=int,
    default=1000,
    show_default=True,
    help=f"Square Attack: iterations (queries) per example, at most {MAX_QUERIES}.",
)
@click.option(
    "--steps",
    type=int,
    default=10,
    show_default=True,
    help="Gradient steps of the transfer attacks on the surrogate.",
)
@click.option(
    "--max-samples",
    type=int,
    default=DEFAULT_MAX_SAMPLES,
    show_default=True,
    help="Attack at most this many target-split samples (a seeded subset).",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Success rate vs eps and vs K as a PNG.",
)
@click.option(
    "--save-examples",
    "examples_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the first setting's adversarial images as an .npz (MedMNIST layout) "
    "for qtool eval --data npz:PATH and qtool predict.",
)
@cluster_options
@json_option
@force_option
def command(
    models,
    data_spec,
    samples_per_class,
    eps,
    norm,
    methods,
    surrogate,
    feature_layer,
    surrogate_steps,
    target_split,
    seeds,
    seed,
    queries,
    steps,
    max_samples,
    plot_path,
    examples_path,
    cluster,
    cluster_timeout,
    json_path,
    force,
) -> None:
    """Attack MODELS with lightweight black-box attacks and report success beside noise.

    The attacker has K labelled images per class from the train split and nothing else: no
    weights, no training data, no outputs. A surrogate trained on those images crafts the
    examples (etf-i, etf-c: the Error TransFormer on a surrogate trained without labels;
    feature: shallow-layer feature disruption; pgd-transfer: the surrogate's logits); square
    queries the target's scores (Square Attack via ART). Every model is queried only through
    ONNX Runtime and never modified. Success = fraction of correctly classified samples whose
    prediction changes; an attack that does not beat random noise of the same norm is
    reported as failing.

    \b
    Examples:
      qtool attack cnn.onnx cnn.int8.onnx --data digits
      qtool attack cnn.int8.onnx --data digits --eps 8/255,64/255 --method etf-i --seeds 5
      qtool attack m.onnx --data npz:x.npz --surrogate my_net.py:build --save-examples adv.npz
      qtool attack cnn.onnx cnn.int8.onnx --data digits --seeds 10 --cluster local:2
    """
    check_outputs(
        force, [*models], json_path=json_path, plot_path=plot_path, examples_path=examples_path
    )
    settings = AttackSettings(
        models=tuple(models),
        data=data_spec,
        samples_per_class=tuple(parse_k(samples_per_class)),
        eps=tuple(parse_eps(eps)),
        norm=norm,
        methods=tuple(split_list(methods)),
        surrogate=SurrogateSpec(surrogate, feature_layer, surrogate_steps),
        target_split=target_split,
        seeds=seeds,
        seed=seed,
        queries=queries,
        steps=steps,
        max_samples=max_samples,
    )
    report, x_adv = _run(
        settings, examples_path is not None, cluster_spec(cluster), cluster_timeout
    )
    show(results_table(report))
    failing = [s for s in report.summaries if s.beats_floor is False]
    if failing:
        info(f"{len(failing)} setting(s) do not beat the noise floor of the same norm: they fail")
    if examples_path is not None and x_adv is not None:
        _save(examples_path, x_adv, settings, report.examples)
    write_json_report(json_path, report.to_dict())
    if plot_path is not None:
        attack_plot(report, plot_path)


def _save(path: Path, x_adv, settings: AttackSettings, setting: dict) -> None:
    from qtool.attacks.campaign import save_examples

    save_examples(path, x_adv, settings, setting)
    accuracy = 100 * setting["accuracy_under_attack"]
    info(
        f"wrote {path}: {setting['method']} K={setting['k']} eps={setting['eps']:.4g} seed "
        f"{setting['seed']} (accuracy under attack on {Path(setting['model']).name}: "
        f"{accuracy:.2f} %)"
    )


def _run(settings: AttackSettings, keep_examples: bool, spec, timeout: float):
    from qtool.attacks.campaign import prepare, run_attack
    from qtool.attacks.run import units

    prepare(settings)  # refusals (missing extras, bad data, unreadable models) before the bar
    total = len(units(settings))
    with progress() as bar:
        task = bar.add_task("attack", total=total, status="")

        def on_unit(unit, result) -> None:
            bar.update(task, advance=1, status=f"{unit.method} K={result.k} seed {unit.seed}")

        if spec is None:
            return run_attack(settings, keep_examples=keep_examples, on_unit=on_unit)
        from qtool.attacks.distributed import dask_units

        with dask_units(spec, timeout) as execute:
            return run_attack(
                settings, keep_examples=keep_examples, on_unit=on_unit, executor=execute
            )
