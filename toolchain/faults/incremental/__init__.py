"""Incremental fault evaluation: a fault re-runs only the layers after the tensor it hits.

plan.py      where the graph can be cut (boundaries in front of each target's consumers)
segments.py  the model as a chain of segment models, a session each, built once; faults
             patch a segment's bytes through the storage fault model's `apply`
cache.py     the clean activations at the cuts for one data set, in `run_scores`' batches
evaluate.py  scores of a faulted model: from the first patched segment on, only the rows
             whose activations differ from the clean run
build.py     cuts kept only where the chain is bit-identical to the whole model (checked),
             under a memory limit; `EvaluationMode` says what was used and why
"""

from qtool.faults.incremental.build import DEFAULT_CACHE_MB, EvaluationMode, build_incremental
from qtool.faults.incremental.cache import ActivationCache
from qtool.faults.incremental.evaluate import Incremental, NotIdentical

__all__ = [
    "DEFAULT_CACHE_MB",
    "ActivationCache",
    "EvaluationMode",
    "Incremental",
    "NotIdentical",
    "build_incremental",
]
