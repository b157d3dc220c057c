"""Shared fixtures: briefly trained zoo models, exported once per test session.

`zoo_models` gives name -> FP32 ONNX path (dynamic batch, qtool metadata, parity-checked) for
cnn and sasa on digits and mlp on breast-cancer; `zoo_checkpoints` gives the checkpoints
they came from. Short training (a few epochs, ~25 s for all three on 2 cores) still gives
real models: cnn ~97 %, sasa ~93 %, mlp ~95 % on the test splits.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# epochs per zoo model for tests: short, but enough to be far above chance
SHORT_EPOCHS = {"cnn": 3, "sasa": 3, "mlp": 10}


@pytest.fixture(scope="session")
def zoo_checkpoints(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("torch")
    from qtool.from_torch.train import train_zoo_model

    folder = tmp_path_factory.mktemp("zoo_checkpoints")
    out = {}
    for name, epochs in SHORT_EPOCHS.items():
        path = folder / f"{name}.pt"
        train_zoo_model(name, None, path, epochs=epochs, seed=0, show_progress=False)
        out[name] = path
    return out


@pytest.fixture(scope="session")
def zoo_models(zoo_checkpoints, tmp_path_factory) -> dict[str, Path]:
    from qtool.from_torch.export import export_model

    folder = tmp_path_factory.mktemp("zoo_onnx")
    out = {}
    for name, ckpt in zoo_checkpoints.items():
        path = folder / f"{name}.onnx"
        export_model(name, path, weights=ckpt)
        out[name] = path
    return out


@pytest.fixture(scope="session")
def dask_scheduler(tmp_path_factory) -> str:
    """A `dask scheduler` and two single-thread `dask worker` processes on 127.0.0.1, started
    once for the session and stopped at its end (also when a test fails)."""
    pytest.importorskip("distributed")
    from dask_cluster import scheduler_and_workers

    with scheduler_and_workers(tmp_path_factory.mktemp("dask")) as address:
        yield address


@pytest.fixture(scope="session")
def int8_models(tmp_path_factory) -> dict[str, Path]:
    """Small INT8 QDQ models shaped like the demo's: "cnn" (digits) and "mlp" (breast-cancer),
    with qtool metadata; about a second to make (tests/hostile_models.py)."""
    from hostile_models import int8_cnn, int8_mlp

    folder = tmp_path_factory.mktemp("int8_models")
    return {"cnn": int8_cnn(folder), "mlp": int8_mlp(folder)}
