"""The four modes of `qtool flip`, one function each: check the options that mode uses, call
the library with typed values, print, write the reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from qtool.commands.flip_views import (
    campaign_plot,
    campaign_table,
    evaluation_line,
    evaluation_table,
    flips_table,
    replay_table,
    search_table,
    seeds_table,
    sizing_table,
)
from qtool.commands.options import cluster_spec, write_json_report
from qtool.errors import QtoolError
from qtool.faults.campaign import CampaignPlan, evaluate_manifest, run_campaign, stats_csv
from qtool.faults.search.results import write_search
from qtool.faults.storage import FlipSettings, inject, load_manifest, replay
from qtool.modelfile.buffers import read_model_files, write_model_files
from qtool.outputs import atomic_write
from qtool.report import info, show

if TYPE_CHECKING:
    from qtool.commands.flip import FlipArgs

Mode = Callable[["FlipArgs"], None]


def mode_of(args: FlipArgs) -> Mode:
    """Which mode the options ask for: search, replay/undo, campaign, or one injection."""
    if args.search is not None:
        return search
    if args.apply_path or args.undo_path:
        return replay_manifest
    if args.is_campaign:
        return campaign
    return injection


def injection(args: FlipArgs) -> None:
    """One injection into one model: write it, log it, optionally score it."""
    if args.csv_path or args.plot_path:
        raise QtoolError("--csv and --plot belong to campaigns (--trials T and --data)")
    _no_cluster(args)
    model = args.models[0]
    settings = FlipSettings(bits=args.bits[0], seed=args.seed, **args.selection)
    result = inject(model, settings)
    manifest = result.manifest
    if args.out is not None:
        manifest["out"] = str(args.out)
    pair = None if args.manifest_path is None else (args.manifest_path, manifest)
    write_model_files(result.files, args.out, args.force, manifest=pair)  # one unit
    show(flips_table(manifest))
    if manifest["converted_to_raw_data"]:
        info(
            "converted to raw_data before flipping (varint-encoded): "
            + ", ".join(manifest["converted_to_raw_data"])
        )
    report: dict = {"manifest": manifest}
    if args.data_spec:
        if len(args.providers) != 1:
            raise QtoolError(
                "one injection is scored on one execution provider: give one --provider "
                "(a campaign compares several)",
                param="providers",
            )
        evaluation = evaluate_manifest(
            model,
            manifest,
            args.data_spec,
            args.split,
            provider=args.providers[0],
            precision=args.precision,
        )
        report["evaluation"] = evaluation
        show(evaluation_table(evaluation))
    write_json_report(args.json_path, report)


def replay_manifest(args: FlipArgs) -> None:
    """--apply / --undo: replay a manifest on MODEL (or undo it), byte for byte."""
    if args.apply_path and args.undo_path:
        raise QtoolError("give --apply or --undo, not both")
    _no_cluster(args)
    if args.is_campaign or len(args.models) != 1:
        raise QtoolError("--apply/--undo work on one model and one manifest, not campaigns")
    if args.out is None:
        raise QtoolError("--apply/--undo need --out for the resulting model")
    model, undo = args.models[0], args.undo_path is not None
    manifest_file = args.undo_path if undo else args.apply_path
    manifest = load_manifest(manifest_file)
    before = read_model_files(model).sha256()
    files = replay(model, manifest, undo=undo, force=args.force)
    write_model_files(files, args.out, args.force)
    out_sha = files.sha256()[""]
    rows = [[str(model), before[""]], [str(args.out), out_sha]]
    show(replay_table("undid" if undo else "applied", len(manifest["flips"]), manifest_file, rows))
    write_json_report(
        args.json_path,
        {
            "model": str(model),
            "manifest": str(manifest_file),
            "undo": undo,
            "out": str(args.out),
            "out_sha256": out_sha,
        },
    )


def campaign(args: FlipArgs) -> None:
    """Several budgets, models or trials: accuracy vs flipped bits, in memory."""
    if args.data_spec is None:
        raise QtoolError("a campaign (--trials, several models or --bits lists) needs --data")
    if args.out or args.manifest_path:
        raise QtoolError(
            "campaigns keep flipped models in memory; --out/--manifest are for one "
            "injection (drop --trials and give one --bits count)"
        )
    auto = args.trials == "auto"
    if not auto and (args.margin is not None):
        raise QtoolError("--margin sizes --trials auto; give --trials auto or drop --margin")
    plan = CampaignPlan(
        budgets=tuple(args.bits),
        trials=10 if args.trials is None else args.trials,
        seed=args.seed,
        split=args.split,
        workers=args.workers,
        providers=tuple(args.providers),
        precision=args.precision,
        margin=None if args.margin is None else args.margin / 100.0,
        confidence=args.confidence / 100.0,
        max_trials=args.max_trials,
        incremental=not args.full_eval,
        cache_mb=args.cache_mb,
        **args.selection,
    )
    try:
        result = _run_campaign(args, plan)
    except KeyboardInterrupt as exc:  # write what the trials done say, then exit 130
        partial = getattr(exc, "campaign_result", None)
        if partial is not None:
            _campaign_outputs(args, partial)
        raise
    _campaign_outputs(args, result)


def _run_campaign(args: FlipArgs, plan: CampaignPlan):
    spec = cluster_spec(args.cluster)
    if spec is None:
        return run_campaign(list(args.models), args.data_spec, plan, time_budget=args.time_budget)
    if args.workers != 1:
        raise QtoolError("give --workers (processes here) or --cluster, not both")
    from qtool.faults.campaign.distributed import dask_executor

    with dask_executor(spec, args.cluster_timeout) as execute:
        return run_campaign(
            list(args.models), args.data_spec, plan, executor=execute, time_budget=args.time_budget
        )


def _campaign_outputs(args: FlipArgs, result) -> None:
    """Tables, JSON, CSV and plot of a campaign (partial ones say so)."""
    for model in result.models:
        info(evaluation_line(model.path, model.evaluation))
    show(campaign_table(result))
    where = f"on {result.cluster}, " if result.cluster else ""
    info(
        f"{len(result.trial_results)} trials in {result.campaign_seconds:.1f} s "
        f"({result.trials_per_s:.1f} trials/s, {where}{result.workers} worker(s))"
    )
    if result.sizing is not None:
        show(sizing_table(result.sizing))
    write_json_report(args.json_path, result)
    if args.csv_path:
        atomic_write(args.csv_path, stats_csv(result.stats))
    if args.plot_path:
        campaign_plot(result, args.plot_path)
    if result.partial:
        info(f"{result.stopped}; the outputs hold the trials done (marked partial)")


def search(args: FlipArgs) -> None:
    """--search progressive: choose the bits (Bit-Flip Attack); the model, manifest and JSON
    report are rewritten after every chosen flip (partial until the end), so Ctrl-C, SIGTERM
    or --time-budget leave them valid; an interruption then exits 130."""
    from qtool.faults.search import repeated_search

    _check_search(args)
    target = None if args.until_accuracy is None else args.until_accuracy / 100.0

    def save(result, summary: dict | None = None) -> None:
        # the outputs were checked before the search started; later saves replace ours
        write_search(result, args.out, args.manifest_path, force=True)
        write_json_report(
            args.json_path,
            {"search": result.summary(), "seeds_summary": summary, "cluster": args.cluster},
        )

    try:
        result, summary = repeated_search(
            args.models[0],
            args.data_spec,
            args.bits[0],
            target,
            attack_samples=args.attack_samples,
            seeds=args.seeds,
            seed=args.seed,
            show_progress=True,
            time_budget=args.time_budget,
            incremental=not args.full_eval,
            cache_mb=args.cache_mb,
            provider=args.providers[0],
            precision=args.precision,
            cluster=cluster_spec(args.cluster),
            cluster_timeout=args.cluster_timeout,
            checkpoint=save,
        )
    except KeyboardInterrupt as exc:
        partial = getattr(exc, "search_result", None)
        if partial is not None:
            show(search_table(partial))
            info(f"{partial.stopped}; the outputs hold the flips so far (marked partial)")
        raise
    save(result, summary)  # again: the manifest now carries the seeds summary
    info(evaluation_line(result.model, result.evaluation))
    show(search_table(result))
    if result.partial:
        info(f"{result.stopped}; the outputs hold the flips found (marked partial)")
    if summary is not None:
        show(seeds_table(summary, args.until_accuracy, args.seed))


def _no_cluster(args: FlipArgs) -> None:
    if args.cluster or args.trials == "auto" or args.margin is not None:
        raise QtoolError(
            "--cluster, --trials auto and --margin belong to campaigns (several --bits, "
            "models or --trials) and --search seeds"
        )
    if args.time_budget is not None:
        raise QtoolError(
            "a time budget stops campaigns and --search; one injection or replay is quick",
            param="time_budget",
        )


def _check_search(args: FlipArgs) -> None:
    if len(args.models) != 1:
        raise QtoolError("--search attacks one model at a time")
    if len(args.bits) != 1:
        raise QtoolError("--search takes one --bits budget (the most flips to choose), not a list")
    if len(args.providers) != 1:
        raise QtoolError(
            "--search attacks the model on one execution provider: give one --provider",
            param="providers",
        )
    defaults = (args.targets, args.layers, args.positions, args.fault) == (
        ("weights",), None, ("any",), "flip",
    )  # fmt: skip
    if not defaults or args.trials or args.apply_path or args.undo_path or args.split:
        raise QtoolError(
            "--search chooses its own bits among all weights: drop --targets/--layers/"
            "--positions/--fault/--trials/--apply/--undo/--split"
        )
    if not args.data_spec:
        raise QtoolError("--search progressive needs --data (a labelled data set, e.g. digits)")
    if args.until_accuracy is not None and not 0 <= args.until_accuracy <= 100:
        raise QtoolError("--until-accuracy is a percentage between 0 and 100")
