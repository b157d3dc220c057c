"""The bit search's seeds on a Dask scheduler give what they give in this process: the same
flips, accuracies, manifest and flipped file. (The ONNX Runtime oracle chooses here, to keep
the test short; the gradient path differs only in running torch with the client's threads.)"""

from __future__ import annotations

import json

import pytest
from flip_models import digits_mlp

from qtool.cluster import parse_cluster
from qtool.faults.search import repeated_search, write_search
from qtool.outputs import to_jsonable

pytest.importorskip("distributed")


def _without_time(summary: dict) -> str:
    out = {k: v for k, v in summary.items() if k != "search_seconds"}
    out["steps"] = [{k: v for k, v in s.items() if k != "seconds"} for s in out["steps"]]
    return json.dumps(to_jsonable(out))


def test_seeds_on_a_scheduler_match_the_local_search(tmp_path, dask_scheduler):
    model = digits_mlp(tmp_path / "mlp.onnx", hidden=16)
    kwargs = dict(attack_samples=32, seeds=2, seed=4, method="oracle")
    here, here_summary = repeated_search(model, "digits", 3, None, **kwargs)
    there, there_summary = repeated_search(
        model, "digits", 3, None, **kwargs, cluster=parse_cluster(dask_scheduler)
    )
    assert json.dumps(there_summary) == json.dumps(here_summary)  # NaN where no target was set
    assert len(here_summary["seeds"]) == 2
    assert _without_time(there.summary()) == _without_time(here.summary())
    write_search(here, tmp_path / "here.onnx", tmp_path / "here.json")
    write_search(there, tmp_path / "there.onnx", tmp_path / "there.json")
    assert (tmp_path / "here.onnx").read_bytes() == (tmp_path / "there.onnx").read_bytes()
    flips = [(s.tensor, s.flat_index, s.bit) for s in there.steps]
    assert flips == [(s.tensor, s.flat_index, s.bit) for s in here.steps] and len(flips) == 3
