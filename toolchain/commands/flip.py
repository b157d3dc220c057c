"""`qtool flip`: bit flips in the stored weights of an ONNX file, and fault campaigns."""

from __future__ import annotations

from pathlib import Path

import click

from qtool.commands.options import check_outputs, force_option, json_option, write_json_report
from qtool.data.datasets import SPLITS
from qtool.errors import QtoolError
from qtool.faults.campaign import (
    DEFAULT_OPT_LEVEL,
    campaign_plot,
    campaign_table,
    evaluate_manifest,
    parse_budgets,
    run_campaign,
    write_csv,
)
from qtool.faults.flip import (
    FAULTS,
    FlipSettings,
    changed_files,
    inject,
    load_manifest,
    read_model_files,
    replay,
    write_model_files,
)
from qtool.outputs import check_output_path, write_json
from qtool.report import fmt_pct, info, show, table

SHOWN_FLIPS = 20


@click.command("flip")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--bits",
    default="1",
    show_default=True,
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
    help="Tensors by graph role: weights, biases, qparams, others or all (comma-separated).",
)
@click.option("--layers", default=None, help="Regex on tensor names and the nodes reading them.")
@click.option(
    "--positions",
    default="any",
    show_default=True,
    help="Bits of each stored word: any, sign, exponent, exponent-msb, mantissa, msb, lsb or "
    "numbers (bit 0 = least significant bit of the little-endian word), comma-separated.",
)
@click.option(
    "--fault",
    type=click.Choice(FAULTS),
    default="flip",
    show_default=True,
    help="flip: toggle; set / reset: stuck-at-1 / stuck-at-0 (only bits that change count).",
)
@click.option("--data", "data_spec", default=None, help="Score clean vs flipped on this data set.")
@click.option("--split", type=click.Choice(SPLITS), default=None, help="Split (default: test).")
@click.option("--trials", type=int, default=None, help="Campaign: trials per bit budget.")
@click.option("--workers", type=int, default=1, show_default=True, help="Campaign processes.")
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
@json_option
@force_option
def command(
    models,
    bits,
    out,
    manifest_path,
    seed,
    targets,
    layers,
    positions,
    fault,
    data_spec,
    split,
    trials,
    workers,
    apply_path,
    undo_path,
    csv_path,
    plot_path,
    search,
    until_accuracy,
    attack_samples,
    seeds,
    json_path,
    force,
) -> None:
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
      qtool flip cnn.int8.onnx --search progressive --bits 20 --data digits \\
          --until-accuracy 20 --seeds 5 --out attacked.onnx --manifest flips.json
    """
    check_outputs(
        force,
        [*models, apply_path, undo_path],
        out=out,
        manifest_path=manifest_path,
        json_path=json_path,
        csv_path=csv_path,
        plot_path=plot_path,
    )
    budgets = parse_budgets(bits)
    if search is not None:
        from qtool.faults.bitsearch import search_cli

        if len(models) != 1:
            raise QtoolError("--search attacks one model at a time")
        defaults = (targets, layers, positions, fault) == ("weights", None, "any", "flip")
        search_cli(
            models[0],
            search=search,
            bits=budgets,
            out=out,
            manifest=manifest_path,
            data=data_spec,
            until_accuracy=until_accuracy,
            attack_samples=attack_samples,
            seeds=seeds,
            seed=seed,
            force=force,
            json_path=json_path,
            defaults_ok=defaults and not (trials or apply_path or undo_path or split),
        )
        return
    campaign = trials is not None or len(models) > 1 or len(budgets) > 1
    if apply_path and undo_path:
        raise QtoolError("give --apply or --undo, not both")
    if apply_path or undo_path:
        if campaign or len(models) != 1:
            raise QtoolError("--apply/--undo work on one model and one manifest, not campaigns")
        if out is None:
            raise QtoolError("--apply/--undo need --out for the resulting model")
        _replay(models[0], apply_path or undo_path, bool(undo_path), out, force, json_path)
        return
    if campaign:
        if data_spec is None:
            raise QtoolError("a campaign (--trials, several models or --bits lists) needs --data")
        if out or manifest_path:
            raise QtoolError(
                "campaigns keep flipped models in memory; --out/--manifest are for one "
                "injection (drop --trials and give one --bits count)"
            )
        result = run_campaign(
            list(models),
            budgets,
            trials or 10,
            data_spec,
            seed,
            workers,
            targets,
            layers=layers,
            positions=positions,
            fault=fault,
            split=split,
        )
        show(campaign_table(result))
        info(
            f"{len(result.trial_results)} trials in {result.seconds:.1f} s "
            f"({result.trials_per_second:.1f} trials/s, {workers} worker(s))"
        )
        write_json_report(json_path, result)
        if csv_path:
            write_csv(result, csv_path)
        if plot_path:
            campaign_plot(result, plot_path)
        return
    if csv_path or plot_path:
        raise QtoolError("--csv and --plot belong to campaigns (--trials T and --data)")
    model = models[0]
    for path in (out, manifest_path):
        if path is not None:
            check_output_path(path, force, (model,))
    settings = FlipSettings(budgets[0], seed, targets, layers, positions, fault)
    injection = inject(model, settings)
    manifest = injection.manifest
    if out is not None:
        changed = {e["file"] for e in manifest["flips"] if e["file"] is not None}
        write_model_files(injection.files, out, force, changed)
        manifest["out"] = str(out)
    if manifest_path is not None:
        write_json(manifest_path, manifest)
    _show_flips(manifest)
    report = {"manifest": manifest}
    if data_spec:
        evaluation = evaluate_manifest(model, manifest, data_spec, split, DEFAULT_OPT_LEVEL)
        report["evaluation"] = evaluation
        show(
            table(
                f"clean vs flipped on {evaluation.data} ({evaluation.split})",
                ["metric", "clean", "flipped"],
                [
                    [
                        "accuracy",
                        fmt_pct(evaluation.clean_accuracy),
                        fmt_pct(evaluation.flipped_accuracy),
                    ],
                    [
                        "silent data corruption",
                        "",
                        f"{fmt_pct(evaluation.sdc_rate)} ({evaluation.sdc_inputs} of "
                        f"{evaluation.clean_correct} clean-correct inputs)",
                    ],
                    [
                        "NaN/Inf outputs",
                        evaluation.clean_nonfinite_rows,
                        evaluation.nonfinite_rows,
                    ],
                ],
            )
        )
    write_json_report(json_path, report)


def _show_flips(manifest: dict) -> None:
    flips = manifest["flips"]
    rows = [
        [
            e["tensor"],
            e["role"],
            ",".join(map(str, e["coords"])) or e["flat_index"],
            e["bit"],
            f"{e['file'] or 'model'}@{e['byte_offset']}",
            _fmt_value(e["old_value"]),
            _fmt_value(e["new_value"]),
        ]
        for e in flips[:SHOWN_FLIPS]
    ]
    if len(flips) > SHOWN_FLIPS:
        rows.append(
            [f"... {len(flips) - SHOWN_FLIPS} more (see --manifest)", "", "", "", "", "", ""]
        )
    show(
        table(
            f"{len(flips)} of {manifest['eligible_bits']} eligible bits ({manifest['fault']}, "
            f"targets={manifest['targets']}, positions={manifest['positions']}, "
            f"seed={manifest['seed']})",
            ["tensor", "role", "element", "bit", "file@byte", "old", "new"],
            rows,
        )
    )
    if manifest["converted_to_raw_data"]:
        info(
            "converted to raw_data before flipping (varint-encoded): "
            + ", ".join(manifest["converted_to_raw_data"])
        )


def _fmt_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _replay(model: Path, manifest_file: Path, undo: bool, out: Path, force: bool, json_path):
    check_output_path(out, force, (model,))
    manifest = load_manifest(manifest_file)
    before = read_model_files(model).sha256()
    files = replay(model, manifest, undo=undo, force=force)
    write_model_files(files, out, force, changed_files(before, files))
    verb = "undid" if undo else "applied"
    show(
        table(
            f"{verb} {len(manifest['flips'])} flips from {manifest_file}",
            ["file", "sha256"],
            [[str(model), before[""]], [str(out), files.sha256()[""]]],
        )
    )
    write_json_report(
        json_path,
        {
            "model": str(model),
            "manifest": str(manifest_file),
            "undo": undo,
            "out": str(out),
            "out_sha256": files.sha256()[""],
        },
    )
