"""What a training run needs to continue exactly where it stopped, as plain tensors and numbers.

A snapshot between two epochs holds the current weights, the optimiser's and the schedule's
state, both random streams (the shuffle/augmentation generator and torch's global one), the
best epoch so far with its weights, and the history. All of it is tensors, numbers, strings,
lists and dicts, so it is saved with `torch.save` and read back with
`torch.load(weights_only=True)`: no pickled object is ever loaded. Restoring it into a run
built with the same settings makes the remaining epochs compute what an uninterrupted run
computes, bit for bit (same seed, data, batch size and thread count).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qtool.errors import QtoolError


@dataclass
class LoopState:
    """Where the epoch loop stands: epochs done, the best epoch so far and the history."""

    epoch: int = 0
    best: tuple[float, float] | None = None  # (val accuracy, -val loss) of the best epoch
    best_epoch: int = 0
    best_state: dict | None = None  # that epoch's weights (detached copies)
    history: list = field(default_factory=list)  # EpochStats


def snapshot(run, loop: LoopState, torch) -> dict:
    """The resume state of `run` after `loop.epoch` epochs (tensors are the live ones: save
    it at once). The best weights are not included: the checkpoint's `state_dict` holds them."""
    return {
        "epoch": loop.epoch,
        "module": run.module.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "generator": run.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "best_score": list(loop.best) if loop.best is not None else None,
        "best_epoch": loop.best_epoch,
        "history": [vars(h) for h in loop.history],
    }


def restore(run, state: dict, best_state: dict, torch, stats_type) -> LoopState:
    """Load a snapshot into a freshly built run; returns the loop state to continue from."""
    try:
        run.module.load_state_dict(state["module"], strict=True)
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        run.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        best = state["best_score"]
        return LoopState(
            epoch=int(state["epoch"]),
            best=tuple(best) if best is not None else None,
            best_epoch=int(state["best_epoch"]),
            best_state={k: v.detach().clone() for k, v in best_state.items()},
            history=[stats_type(**h) for h in state["history"]],
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QtoolError(
            f"the resume state does not fit this run ({first[:160]}); resume with the qtool "
            "and settings that wrote it, or start again without --resume",
            param="resume",
        ) from exc
