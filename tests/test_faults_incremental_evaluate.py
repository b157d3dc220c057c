"""Incremental fault evaluation gives the whole model's scores bit for bit.

Every zoo model (trained briefly, exported by qtool), an INT8 QDQ model made by qtool's
quantiser and a ResNet (BatchNorm unfolded, identity and strided shortcuts; FP32 and
INT8) are faulted in many seeded trials, across budgets and bit classes (exponent MSBs give
Inf/NaN), and the raw scores of the segments are compared byte for byte with the whole
model's scores from the faulted bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flip_models import digits_resnet

from qtool.data.datasets import load_dataset
from qtool.evaluation.model_io import run_scores
from qtool.faults.campaign.trials import prepare_model, trial_rng
from qtool.faults.storage import Selection


@pytest.fixture(scope="module")
def int8_models(zoo_models, tmp_path_factory) -> dict[str, Path]:
    """The zoo CNN and a digits ResNet, both also as INT8 QDQ by qtool's quantiser."""
    from qtool.quantization.quantize import QuantizeOptions, quantize_model

    folder = tmp_path_factory.mktemp("incremental")
    resnet = digits_resnet(folder / "resnet.onnx")
    out = {"resnet": resnet}
    for name, src in (("cnn.int8", zoo_models["cnn"]), ("resnet.int8", resnet)):
        out[name] = folder / f"{name}.onnx"
        quantize_model(src, out[name], "digits", QuantizeOptions(samples=64))
    return out


def faulted_scores(model, sites) -> tuple[np.ndarray, np.ndarray]:
    """(incremental, whole-model) raw scores with the faults at `sites`."""
    sessions = model.incremental.segments.patched_sessions(model.fault, sites)
    incremental = model.incremental.scores(model.cache, sessions)
    undo = model.fault.apply({None: model.buf}, sites)
    try:
        whole = run_scores(model.session(), model.io, model.x, batch=model.batch)
    finally:
        undo.restore()
    return incremental, whole


def check_identical(path, data_spec, selection, budgets, trials, *, segments_at_least=2):
    data = load_dataset(data_spec)
    model = prepare_model(path, data, selection, incremental=True)
    assert model.evaluation.mode == "incremental", model.evaluation
    assert model.evaluation.segments >= segments_at_least
    assert model.incremental.rowwise  # the row-skipping path is the one under test
    touched, model.nonfinite_trials = set(), 0
    for bits in budgets:
        for trial in range(trials):
            hits = model.fault.draw(
                model.space, bits, trial_rng(7, model.key, bits, trial), {None: model.buf}
            )
            sites = [model.targets[h.target].site(h.word, h.bit) for h in hits]
            incremental, whole = faulted_scores(model, sites)
            assert incremental.tobytes() == whole.tobytes(), (path.name, bits, trial)
            model.nonfinite_trials += not np.isfinite(whole).all()
            touched |= set(model.incremental.segments.segment_sites(sites))
    assert len(touched) > 1  # trials started from several cuts
    return model


@pytest.mark.parametrize("name", ["cnn", "sasa", "mlp"])
def test_every_zoo_model_is_bit_identical(zoo_models, name):
    data = "breast-cancer" if name == "mlp" else "digits"
    budgets = (1, 8) if name == "sasa" else (1, 4, 16)  # sasa: 8x slower per evaluation
    check_identical(zoo_models[name], data, Selection(), budgets, 2 if name == "sasa" else 4)


@pytest.mark.parametrize("name", ["cnn.int8", "resnet", "resnet.int8"])
def test_int8_and_resnet_models_are_bit_identical(int8_models, name):
    model = check_identical(int8_models[name], "digits", Selection(), (1, 3, 12), 4)
    if name.endswith("int8"):  # cuts hold quantised tensors: DQ -> Conv -> Q stays whole
        info = model.incremental.segments.info
        for cut in model.incremental.segments.plan.cuts[1:]:
            kinds = {info.graph.node[info.producer[n]].op_type for n in cut}
            assert kinds == {"QuantizeLinear"}, cut


def test_nan_and_inf_scores_are_identical(int8_models):
    """Exponent MSB flips in FP32 weights give Inf/NaN activations and scores."""
    model = check_identical(
        int8_models["resnet"], "digits", Selection(positions=("exponent-msb",)), (1, 2), 4
    )
    assert model.nonfinite_trials > 0


def test_committed_faults_update_the_cache(int8_models):
    """The bit search makes its flips permanent: caches then hold the faulted model's run."""
    data = load_dataset("digits")
    model = prepare_model(int8_models["resnet.int8"], data, Selection(), incremental=True)
    inc = model.incremental
    hits = model.fault.draw(model.space, 3, np.random.default_rng(3), {None: model.buf})
    sites = [model.targets[h.target].site(h.word, h.bit) for h in hits]
    before = model.cache.scores.copy()
    inc.commit(model.fault, sites, [model.cache])
    model.fault.apply({None: model.buf}, sites)  # the whole model, faulted the same way
    whole = run_scores(model.session(), model.io, model.x, batch=model.batch)
    assert model.cache.scores.tobytes() == whole.tobytes()
    assert not np.array_equal(before, whole)
    more = model.fault.draw(model.space, 2, np.random.default_rng(4), {None: model.buf})
    more_sites = [model.targets[h.target].site(h.word, h.bit) for h in more]
    incremental, whole = faulted_scores(model, more_sites)  # trials on top of the commits
    assert incremental.tobytes() == whole.tobytes()


def test_a_small_cache_limit_drops_the_earliest_cuts_and_stays_identical(int8_models):
    """Under a limit the latest cuts are kept (they serve most bits); trials that hit a
    tensor before the first kept cut run from the model's start, still bit-identical."""
    data = load_dataset("digits")
    whole = prepare_model(int8_models["resnet.int8"], data, Selection(), incremental=True)
    limit = whole.evaluation.cache_mb / 3
    model = prepare_model(
        int8_models["resnet.int8"], data, Selection(), incremental=True, cache_mb=limit
    )
    mode = model.evaluation
    assert mode.mode == "incremental" and mode.cuts_over_limit > 0
    assert 0 < mode.cache_mb <= limit and mode.segments < whole.evaluation.segments
    for trial in range(6):
        hits = model.fault.draw(
            model.space, 2, trial_rng(1, model.key, 2, trial), {None: model.buf}
        )
        sites = [model.targets[h.target].site(h.word, h.bit) for h in hits]
        incremental, full = faulted_scores(model, sites)
        assert incremental.tobytes() == full.tobytes()
