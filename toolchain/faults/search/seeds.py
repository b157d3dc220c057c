"""The search over several seeded attack batches, and targeted vs random flips side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from qtool.cluster.spec import DEFAULT_TIMEOUT, ClusterSpec
from qtool.data.datasets import parse_spec
from qtool.errors import QtoolError
from qtool.faults.campaign.run import CampaignPlan, run_campaign
from qtool.faults.campaign.stats import BudgetStats
from qtool.faults.incremental import DEFAULT_CACHE_MB
from qtool.faults.search.progressive import Checkpoint, progressive_search
from qtool.faults.search.results import SearchResult, flips_to
from qtool.modelfile.metadata import qtool_metadata
from qtool.report import progress
from qtool.stopping import Deadline

DEFAULT_BUDGETS = (1, 2, 5, 10, 20)


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    if not len(arr):
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def budget_summary(results: list[SearchResult], budgets: list[int]) -> dict:
    """Mean/std over seeds of flips-to-target and of accuracy at each budget."""
    reached = [r.flips_to_target for r in results if r.flips_to_target is not None]
    mean, std = _mean_std([float(v) for v in reached])
    return {
        "seeds": [r.seed for r in results],
        "flips_to_target": {
            "mean": mean,
            "std": std,
            "reached": len(reached),
            "runs": len(results),
            "values": [r.flips_to_target for r in results],
        },
        "accuracy_at": {
            str(b): dict(
                zip(("mean", "std"), _mean_std([r.accuracy_at(b) for r in results]), strict=True)
            )
            for b in budgets
        },
    }


def repeated_search(
    model: Path | str,
    data: str,
    bits: int,
    until_accuracy: float | None = None,
    *,
    attack_samples: int = 128,
    seeds: int = 1,
    seed: int = 0,
    method: str = "auto",
    show_progress: bool = False,
    provider: str = "cpu",
    precision: str = "fp32",
    cluster: ClusterSpec | None = None,
    cluster_timeout: float = DEFAULT_TIMEOUT,
    time_budget: float | None = None,
    incremental: bool = True,
    cache_mb: float = DEFAULT_CACHE_MB,
    checkpoint: Checkpoint | None = None,
) -> tuple[SearchResult, dict | None]:
    """The search with attack batches seeded seed, seed+1, ...: the first run (its flipped
    model and manifest) and, for several seeds, mean ± std over the runs (also put in the
    first run's manifest as `search.seeds_summary`). `until_accuracy` is a fraction. With a
    `cluster`, the seeds run there as independent units (the same results).

    Here (no cluster), `time_budget` (seconds) covers all runs: a run still going then ends
    partial and no further seed starts; the summary covers the runs made. `checkpoint` gets
    the first run's result after each of its flips (see `progressive_search`)."""
    if seeds < 1:
        raise QtoolError(f"{seeds}: give at least 1 seed", param="seeds")
    options = dict(attack_samples=attack_samples, method=method, provider=provider,
                   precision=precision)  # fmt: skip
    if cluster is not None:
        if time_budget is not None:
            raise QtoolError(
                "a time budget stops a search run here, not on a cluster", param="time_budget"
            )
        runs = _on_cluster(
            model, data, bits, until_accuracy, [seed + k for k in range(seeds)], options,
            cluster, cluster_timeout, show_progress,
        )  # fmt: skip
    else:
        deadline = Deadline(time_budget)
        runs = []
        for k in range(seeds):
            if k and deadline.expired:
                break
            runs.append(
                progressive_search(
                    model, data, bits, until_accuracy, seed=seed + k,
                    show_progress=show_progress, incremental=incremental, cache_mb=cache_mb,
                    deadline=deadline, checkpoint=None if k else checkpoint, **options,
                )
            )  # fmt: skip
    if seeds == 1:
        return runs[0], None
    budgets = sorted({b for b in DEFAULT_BUDGETS if b <= bits} | {bits})
    summary = budget_summary(runs, budgets)
    runs[0].manifest["search"]["seeds_summary"] = summary
    return runs[0], summary


def _on_cluster(
    model, data, bits, until_accuracy, seed_list, options: dict, cluster, timeout, bar
) -> list[SearchResult]:
    from qtool.faults.search.distributed import distributed_searches

    with progress() as p:
        task = p.add_task("bit search seeds", total=len(seed_list), status="")
        p.update(task, visible=bar)

        def done(r: SearchResult) -> None:
            p.update(task, advance=1, status=f"seed {r.seed}: {100 * r.final_accuracy:.1f} %")

        return distributed_searches(
            model, data, bits, until_accuracy, seed_list, cluster=cluster, timeout=timeout,
            on_done=done, **options,
        )  # fmt: skip


def precision(path: Path) -> str:
    """INT8 when the graph dequantises or runs quantised kernels, else FP32."""
    proto = onnx.load(str(path), load_external_data=False)
    ops = {n.op_type for n in proto.graph.node}
    return "INT8" if ops & {"DequantizeLinear", "QLinearConv", "QLinearMatMul", "QGemm"} else "FP32"


def family(path: Path) -> str:
    """The zoo model name in the metadata, else cnn or mlp by the ops."""
    proto = onnx.load(str(path), load_external_data=False)
    name = qtool_metadata(proto).get("model")
    ops = {n.op_type for n in proto.graph.node}
    if isinstance(name, str) and name:
        return name
    return "cnn" if ops & {"Conv", "QLinearConv", "ConvInteger"} else "mlp"


def compare_targeted_random(
    models: list[Path | str],
    data: str,
    budgets: list[int] | tuple[int, ...] = DEFAULT_BUDGETS,
    seeds: int = 5,
    *,
    attack_samples: int = 128,
    until_accuracy: float | None = None,
    seed: int = 0,
) -> list[dict]:
    """Rows (model x budget): targeted accuracy (search, `seeds` attack batches) beside random
    flips (the flip campaign, `seeds` trials) at the same budget, plus flips-to-target.

    The accuracy target defaults to chance + 10 pp on the evaluation split.
    """
    budgets = sorted({int(b) for b in budgets})
    rows: list[dict] = []
    for model in models:
        path = Path(model)
        runs = [
            progressive_search(path, data, max(budgets), None, attack_samples, seed + k)
            for k in range(seeds)
        ]
        target = until_accuracy if until_accuracy is not None else runs[0].chance + 0.10
        for r in runs:
            r.until_accuracy = target
            r.flips_to_target = flips_to(r.accuracies, target)
        eval_spec = data if parse_spec(data).split else f"{data}:test"
        plan = CampaignPlan(budgets=tuple(budgets), trials=seeds, seed=seed)
        campaign = run_campaign([path], eval_spec, plan, show_progress=False)
        rows += _rows(path, runs, budgets, target, {s.bits: s for s in campaign.stats})
    return rows


def _rows(
    path: Path,
    runs: list[SearchResult],
    budgets: list[int],
    target: float,
    random_at: dict[int, BudgetStats],
) -> list[dict]:
    summary = budget_summary(runs, budgets)
    ftt = summary["flips_to_target"]
    rows = []
    for b in budgets:
        acc = summary["accuracy_at"][str(b)]
        rows.append(
            {
                "model": path.name,
                "family": family(path),
                "precision": precision(path),
                "method": "+".join(sorted({r.method for r in runs})),
                "clean": runs[0].clean_accuracy,
                "chance": runs[0].chance,
                "target": target,
                "budget": b,
                "targeted_mean": acc["mean"],
                "targeted_std": acc["std"],
                "random_mean": random_at[b].mean,
                "random_std": random_at[b].std,
                "flips_to_target_mean": ftt["mean"],
                "flips_to_target_std": ftt["std"],
                "reached": f"{ftt['reached']}/{ftt['runs']}",
                "seeds": len(runs),
            }
        )
    return rows
