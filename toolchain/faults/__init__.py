"""Faults: what a model survives when the bits it is made of go wrong.

    words.py     stored words and named bit classes (sign, exponent, msb, ...) per data type,
                 shared by every family
    storage/     faults in the stored bytes of initializers (flip, stuck-at-0/1): selection
                 by graph role, the fault-model registry, the bit space, injection, manifests
    campaign/    accuracy under N random faults over many seeded trials, with statistics
    search/      chosen faults: the progressive bit search (Bit-Flip Attack)

Adding a storage fault model (e.g. a row-hammer pattern) is one class in
`storage/models.py` registered in `FAULT_MODELS`, plus its test: `qtool flip --fault`,
campaigns, manifests and replay find it there.

A second family (faults on activations, at run time) goes beside `storage/` as
`activations/`, without touching storage faults: its own selection (node outputs instead of
initializers, chosen by op type), its own fault-model registry in one file reusing
`words.py` for bit arithmetic, and its own way to hit (a session wrapper or an inserted node
instead of a byte edit). Its campaign trial is a new module beside `campaign/trials.py`;
`campaign/stats.py` knows nothing about bytes and is reused as is, and `campaign/executor.py`
is the place a run-time family plugs its prepare/trial pair into.
"""

from qtool.faults.storage import (
    FAULT_MODELS,
    FlipSettings,
    Selection,
    inject,
    load_manifest,
    replay,
)

__all__ = ["FAULT_MODELS", "FlipSettings", "Selection", "inject", "load_manifest", "replay"]
