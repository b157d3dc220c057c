"""Continuing an unfinished training run: its checkpoint, its settings, its data.

A run is resumed with the settings it started with (they shape its learning-rate schedule,
its batches and its random streams); a setting given again must equal the recorded one, and
the train split must be the same data (checked by a sha256 recorded at the start), so that
the resumed run ends with the weights the uninterrupted run would have.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qtool.errors import QtoolError

# settings a resumed run takes from its checkpoint: name -> (config key, what to call it)
RECORDED = {
    "data_spec": "dataset",
    "epochs": "epochs",
    "seed": "seed",
    "lr": "lr",
    "batch_size": "batch_size",
    "threads": "threads",
}


@dataclass(frozen=True)
class RunSettings:
    """What a training run is asked for (None: the model's default, or the recorded one)."""

    data_spec: str | None = None
    epochs: int | None = None
    seed: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    threads: int | None = None


def load_resumable(path: Path, model: str) -> dict:
    """The checkpoint of an unfinished run of `model`; anything else is bad input."""
    from qtool.models.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path)
    config = checkpoint["config"]
    if config.get("model") != model:
        raise QtoolError(
            f"{path} is a run of {config.get('model')!r}, not {model!r}: "
            f"resume it with qtool train {config.get('model')} --resume {path}",
            param="resume",
        )
    if not isinstance(checkpoint.get("resume"), dict):
        done = config.get("epochs_done", config.get("epochs"))
        raise QtoolError(
            f"{path} is a finished run ({done} of {config.get('epochs')} epochs); there is "
            "nothing to resume: export it, or train a new run with more --epochs",
            param="resume",
        )
    if checkpoint.get("state_dict") is None:
        raise QtoolError(f"{path} holds no weights to resume from; start again", param="resume")
    return checkpoint


def settings_from(checkpoint: dict, given: RunSettings, path: Path) -> RunSettings:
    """The recorded settings; one given again must be the same (else bad input naming it)."""
    config = checkpoint["config"]
    values = {}
    for name, key in RECORDED.items():
        recorded, asked = config.get(key), getattr(given, name)
        if asked is not None and asked != recorded:
            raise QtoolError(
                f"{path} was started with {key} {recorded}, not {asked}; a resumed run keeps "
                "its settings (they shape its schedule and batches): leave the option out",
                param=name,
            )
        values[name] = recorded
    return RunSettings(**values)


def data_sha256(x: np.ndarray, y: np.ndarray) -> str:
    """A digest of the train split (samples and labels), recorded to refuse other data."""
    digest = hashlib.sha256()
    for array in (x, y):
        a = np.ascontiguousarray(array)
        digest.update(f"{a.dtype}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def check_same_data(checkpoint: dict, digest: str, path: Path) -> None:
    recorded = checkpoint["config"].get("train_data_sha256")
    if recorded != digest:
        raise QtoolError(
            f"the train split is not the data {path} was trained on (sha256 {digest[:16]}… vs "
            f"{str(recorded)[:16]}…); resume on the same data, or start again",
            param="data_spec",
        )


def architecture_from(spec, checkpoint: dict, asked: tuple, path: Path) -> dict:
    """The recorded size/width/depth; one asked again must build the same network."""
    recorded = dict(checkpoint["config"].get("architecture") or spec.architecture())
    if any(v is not None for v in asked) and dict(spec.architecture(*asked)) != recorded:
        raise QtoolError(
            f"{path} was started as {recorded}, not {dict(spec.architecture(*asked))}; a "
            "resumed run keeps its network: leave the size options out",
            param="size",
        )
    return recorded
