"""`qtool flip`: bit flips in the stored weights of an ONNX file, and fault campaigns.

The options are parsed here into typed values (`FlipArgs`); one function per mode in
`flip_modes` does the work: one injection, replaying or undoing a manifest, a campaign, or
the adversarial bit search.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from qtool.commands.flip_modes import mode_of
from qtool.commands.options import (
    check_outputs,
    cluster_options,
    force_option,
    json_option,
    split_list,
)
from qtool.data.datasets import SPLITS
from qtool.faults.campaign.run import DEFAULT_MAX_TRIALS
from qtool.faults.incremental import DEFAULT_CACHE_MB
from qtool.faults.storage.models import FAULT_MODELS
from qtool.faults.storage.selection import TARGET_CLASSES
from qtool.faults.words import BIT_CLASSES, MAX_BIT
from qtool.runtimes.providers import DEFAULT_PRECISION, PRECISIONS

ALL_TARGETS = [*TARGET_CLASSES, "all"]


def parse_budgets(ctx: click.Context, param: click.Parameter, text: str) -> list[int]:
    """`--bits`: '20' or '1,2,5,10,20' -> sorted distinct non-negative counts."""
    try:
        values = [int(v) for v in split_list(text)]
    except ValueError:
        raise click.BadParameter(f"{text!r}: give counts like 20 or 1,2,5,10,20") from None
    if not values or any(v < 0 for v in values):
        raise click.BadParameter(f"{text!r}: give non-negative counts like 1,2,5,10,20")
    return sorted(set(values))


def parse_targets(ctx: click.Context, param: click.Parameter, text: str) -> tuple[str, ...]:
    """`--targets`: 'weights,biases' -> ('weights', 'biases'); 'all' selects every role."""
    items = tuple(t.lower() for t in split_list(text))
    if not items or any(t not in ALL_TARGETS for t in items):
        raise click.BadParameter(f"{text!r}: use {', '.join(ALL_TARGETS)} (comma-separated)")
    return items


def parse_positions(ctx: click.Context, param: click.Parameter, text: str) -> tuple:
    """`--positions`: named bit classes and bit numbers, e.g. 'msb' or '0,3,30'."""
    items: list[str | int] = []
    for token in (t.lower() for t in split_list(text)):
        if token in BIT_CLASSES:
            items.append(token)
        elif token.isdigit() and int(token) <= MAX_BIT:
            items.append(int(token))
        else:
            items = []
            break
    if not items:
        raise click.BadParameter(
            f"{text!r}: use {', '.join(BIT_CLASSES.names())} or bit numbers 0-{MAX_BIT} (bit 0 "
            "= least significant bit of the stored little-endian word), comma-separated"
        )
    return tuple(items)


def parse_trials(ctx: click.Context, param: click.Parameter, text: str | None) -> int | str | None:
    """`--trials`: a count per budget, or 'auto' (sized by --margin and --confidence)."""
    if text is None or text.strip().lower() == "auto":
        return None if text is None else "auto"
    try:
        value = int(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: give a number of trials like 50, or auto") from None
    if value < 1:
        raise click.BadParameter(f"{text!r}: give at least 1 trial, or auto")
    return value


@dataclass(frozen=True)
class FlipArgs:
    """Every `qtool flip` option, parsed (names are the click parameter names)."""

    models: tuple[Path, ...]
    bits: list[int]
    out: Path | None
    manifest_path: Path | None
    seed: int
    targets: tuple[str, ...]
    layers: str | None
    positions: tuple[str | int, ...]
    fault: str
    data_spec: str | None
    split: str | None
    trials: int | str | None
    margin: float | None
    confidence: float
    max_trials: int
    workers: int
    cluster: str | None
    cluster_timeout: float
    apply_path: Path | None
    undo_path: Path | None
    csv_path: Path | None
    plot_path: Path | None
    search: str | None
    until_accuracy: float | None
    attack_samples: int
    seeds: int
    providers: list[str]
    precision: str
    time_budget: float | None
    full_eval: bool
    cache_mb: float
    json_path: Path | None
    force: bool

    @property
    def selection(self) -> dict[str, Any]:
        """The fault selection options, as keyword arguments of `qtool.faults.Selection`."""
        return {
            "targets": self.targets,
            "positions": self.positions,
            "layers": self.layers,
            "fault": self.fault,
        }

    @property
    def is_campaign(self) -> bool:
        return self.trials is not None or len(self.models) > 1 or len(self.bits) > 1


@click.command("flip")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--bits",
    default="1",
    show_default=True,
    callback=parse_budgets,
    help="Number of distinct bits to flip; a list like 1,2,5,10,20 runs a campaign.",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Flipped model file.")
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the flip log (every flipped bit, old/new value, sha256s) here.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--targets",
    default="weights",
    show_default=True,
    callback=parse_targets,
    help="Tensors by graph role: weights, biases, qparams, others or all (comma-separated).",
)
@click.option("--layers", default=None, help="Regex on tensor names and the nodes reading them.")
@click.option(
    "--positions",
    default="any",
    show_default=True,
    callback=parse_positions,
    help="Bits of each stored word: any, sign, exponent, exponent-msb, mantissa, msb, lsb or "
    "numbers (bit 0 = least significant bit of the little-endian word), comma-separated.",
)
@click.option(
    "--fault",
    type=click.Choice(FAULT_MODELS.names()),
    default="flip",
    show_default=True,
    help="flip: toggle; set / reset: stuck-at-1 / stuck-at-0 (only bits that change count).",
)
@click.option("--data", "data_spec", default=None, help="Score clean vs flipped on this data set.")
@click.option("--split", type=click.Choice(SPLITS), default=None, help="Split (default: test).")
@click.option(
    "--trials",
    callback=parse_trials,
    default=None,
    metavar="N|auto",
    help="Campaign: trials per bit budget, or auto: as many as --margin and --confidence need "
    "(the Leveugle et al. sample size, or earlier once the bootstrap interval is that narrow).",
)
@click.option(
    "--margin",
    type=click.FloatRange(min=0, max=50, min_open=True),
    default=None,
    help="--trials auto: the margin of the mean accuracy, in percentage points (e.g. 1).",
)
@click.option(
    "--confidence",
    type=click.FloatRange(min=50, max=100, max_open=True),
    default=95.0,
    show_default=True,
    help="--trials auto: confidence of that margin, in percent.",
)
@click.option(
    "--max-trials",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_TRIALS,
    show_default=True,
    help="--trials auto: the most trials one budget may take.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Campaign: worker processes on this machine (spawned; no extra needed).",
)
@cluster_options
@click.option(
    "--apply",
    "apply_path",
    type=click.Path(path_type=Path),
    help="Replay this manifest on MODEL (checks its sha256).",
)
@click.option(
    "--undo",
    "undo_path",
    type=click.Path(path_type=Path),
    help="Undo this manifest's flips on the flipped MODEL, byte for byte.",
)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--search",
    type=click.Choice(["progressive"]),
    default=None,
    help="Choose the bits adversarially (Bit-Flip Attack, progressive bit search); needs --data.",
)
@click.option(
    "--until-accuracy",
    type=float,
    default=None,
    help="--search: stop once test accuracy (percent) is at or below this.",
)
@click.option(
    "--attack-samples",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="--search: attack batch size (train split, the model's own labels).",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="--search: repeat with this many seeded attack batches (mean ± std).",
)
@click.option(
    "--provider",
    "providers",
    default="cpu",
    show_default=True,
    callback=lambda ctx, param, value: split_list(value) or ["cpu"],
    help="Execution provider(s) the ONNX Runtime evaluations run on; a campaign runs every "
    "model on each (same flips per trial), --search and --data on one.",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=DEFAULT_PRECISION,
    show_default=True,
    help="fp32: forbid reduced precision on the provider; auto: its own choice.",
)
@click.option(
    "--time-budget",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Campaigns and --search: stop after this long, keeping the trials done or the flips "
    "found so far (outputs marked partial; exit 0).",
)
@click.option(
    "--full-eval",
    is_flag=True,
    help="Campaigns and --search: run the whole model for every faulted evaluation instead "
    "of only the layers after the fault (the default, bit-identical).",
)
@click.option(
    "--cache-mb",
    type=click.FloatRange(min=0),
    default=DEFAULT_CACHE_MB,
    show_default=True,
    help="Limit of the clean activations kept for incremental evaluation, per process; "
    "beyond it the earliest cuts (or all) fall back to running the whole model.",
)
@json_option
@force_option
def command(**options: Any) -> None:
    """Flip bits in the stored initializers of MODEL (a storage fault), or run a campaign.

    Bits are drawn uniformly over all eligible bits (size-weighted across tensors, distinct),
    chosen by graph role, not by names. Only the flipped bytes of the file change (`cmp -l`
    shows them); the manifest logs each flip and can be replayed (--apply) or undone (--undo).
    These are faults in the stored model (file or memory before loading): ONNX Runtime folds
    and pre-packs weights at load, so they are not run-time DRAM faults.

    \b
    Examples:
      qtool flip cnn.int8.onnx --bits 20 --out flipped.onnx --manifest flips.json
      qtool flip cnn.int8.onnx --bits 5 --positions msb --data digits
      qtool flip cnn.onnx --bits 1 --positions exponent-msb --layers conv1 --out f.onnx
      qtool flip other.onnx --apply flips.json --out again.onnx
      qtool flip flipped.onnx --undo flips.json --out restored.onnx
      qtool flip cnn.onnx cnn.int8.onnx --bits 1,2,5,10,20 --trials 50 --data digits \\
          --workers 2 --plot curve.png --csv campaign.csv
      qtool flip cnn.int8.onnx --bits 1,5,20 --trials 50 --data digits --provider cpu,openvino
      qtool flip cnn.int8.onnx --bits 1,5,20 --trials auto --margin 1 --data digits \\
          --cluster tcp://scheduler:8786 --json campaign.json
      qtool flip cnn.int8.onnx --search progressive --bits 20 --data digits \\
          --until-accuracy 20 --seeds 5 --out attacked.onnx --manifest flips.json
      qtool flip resnet.int8.onnx --search progressive --bits 50 --data npz:scans.npz \\
          --time-budget 600 --out attacked.onnx --manifest flips.json

    Ctrl-C or SIGTERM during a campaign or --search writes the trials done or the flips found
    so far (marked partial) and exits 130; --apply accepts a partial search manifest.
    """
    args = FlipArgs(**options)
    check_outputs(
        args.force,
        [*args.models, args.apply_path, args.undo_path],
        out=args.out,
        manifest_path=args.manifest_path,
        json_path=args.json_path,
        csv_path=args.csv_path,
        plot_path=args.plot_path,
    )
    mode_of(args)(args)
