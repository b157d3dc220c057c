"""Resume state of a training run: a run stopped after 2 of 4 epochs and resumed from its
snapshot ends with exactly the weights of the uninterrupted 4-epoch run."""

from __future__ import annotations

import pytest

from qtool.data.datasets import load_dataset
from qtool.errors import QtoolError

torch = pytest.importorskip("torch")

from qtool.models import get_spec  # noqa: E402
from qtool.models.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from qtool.models.trainer import train  # noqa: E402


def _train(epochs: int, **kwargs):
    data = {s: load_dataset("digits", s) for s in ("train", "val")}
    return train(
        get_spec("cnn"),
        data["train"].x,
        data["train"].y,
        data["val"].x,
        data["val"].y,
        class_names=data["train"].class_names,
        dataset="digits",
        kind="image",
        seed=7,
        epochs=epochs,
        **kwargs,
    )


def _saved(state: dict, path) -> dict:
    """Through the checkpoint file and back (torch.load(weights_only=True))."""
    save_checkpoint(state["state_dict"], state["config"], path, resume=state["resume"])
    return load_checkpoint(path)


def test_resumed_run_equals_uninterrupted_run_exactly(tmp_path):
    full = _train(4)
    kept: dict = {}

    def stop_after_two(stats, checkpoint):
        kept["state"] = _saved(checkpoint(), tmp_path / "run.pt")
        return "stop" if stats.epoch == 2 else None

    first = _train(4, on_epoch=stop_after_two)
    assert (first.epochs_done, first.stopped) == (2, "stop")
    assert kept["state"]["resume"]["epoch"] == 2
    resumed = _train(4, resume=kept["state"])
    assert resumed.stopped is None and resumed.epochs_done == 4
    a, b = full.module.state_dict(), resumed.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h.loss for h in full.history] == [h.loss for h in resumed.history]
    assert resumed.config["best_epoch"] == full.config["best_epoch"]


def test_a_snapshot_of_another_architecture_is_refused(tmp_path):
    kept: dict = {}

    def keep(stats, checkpoint):
        kept["state"] = _saved(checkpoint(), tmp_path / "run.pt")
        return "stop"

    _train(2, on_epoch=keep)
    state = kept["state"]
    state["resume"]["module"] = {"nope": torch.zeros(1)}
    with pytest.raises(QtoolError, match="resume state does not fit this run"):
        _train(2, resume=state)
