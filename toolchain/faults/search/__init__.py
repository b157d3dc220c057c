"""Targeted bit flips: the Bit-Flip Attack's progressive bit search on a deployable ONNX file.

Random flips barely hurt an INT8 model; an adversary who *chooses* the bits can break it with
a handful (Rakin et al. 2019, "Bit-Flip Attack: Crushing Neural Network with Progressive Bit
Search"). This package answers "how many chosen bits does it take to break this file?".

Each iteration of the progressive bit search (`progressive.py`):
1. computes dL/dW on an attack batch (train split, labels = the clean model's own predictions)
   with a differentiable torch replica of the ONNX graph (`qtool.runtimes.torch_replica`),
   chunk by chunk so memory stays bounded (`gradient.py`);
2. in every target layer ranks all (element, bit) flips by the first-order loss change
   gradient x value change (`values.py`) and keeps the top `per_layer` that raise the loss;
3. measures each candidate's real loss in ONNX Runtime on the deployable bytes, running only
   the layers from the flipped one on (`scoring.py`, `qtool.faults.incremental`), in
   parallel threads, and keeps the one flip that raises it most;
4. applies that flip to the ONNX bytes and measures accuracy on the test split in ONNX
   Runtime from those bytes (`attacked.py`), then hands the result so far to a checkpoint.
When the graph cannot be replicated or torch is missing, a gradient-free loss oracle in ONNX
Runtime chooses instead (`oracle.py`). `losses.py` holds the objectives, `results.py` the
step log, result and manifest. `seeds.py` repeats the search over seeded attack batches and
sets it beside random flips at the same budgets.
"""

from qtool.faults.search.attacked import split_data
from qtool.faults.search.progressive import progressive_search
from qtool.faults.search.results import SearchResult, SearchStep, write_search
from qtool.faults.search.seeds import (
    DEFAULT_BUDGETS,
    budget_summary,
    compare_targeted_random,
    repeated_search,
)
from qtool.faults.search.values import flipped_values, int8_flip

__all__ = [
    "DEFAULT_BUDGETS",
    "SearchResult",
    "SearchStep",
    "budget_summary",
    "compare_targeted_random",
    "flipped_values",
    "int8_flip",
    "progressive_search",
    "repeated_search",
    "split_data",
    "write_search",
]
