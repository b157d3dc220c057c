"""Targeted bit flips: the Bit-Flip Attack's progressive bit search on a deployable ONNX file.

Random flips barely hurt an INT8 model; an adversary who *chooses* the bits can break it with
a handful (Rakin et al. 2019, "Bit-Flip Attack: Crushing Neural Network with Progressive Bit
Search"). This package answers "how many chosen bits does it take to break this file?".

Each iteration of the progressive bit search (`progressive.py`):
1. computes dL/dW on an attack batch (train split, labels = the clean model's own predictions)
   with a differentiable torch replica of the ONNX graph (`qtool.runtimes.torch_replica`);
2. in every target layer ranks all (element, bit) flips by the first-order loss change
   gradient x value change (`values.py`) and keeps the top `per_layer` that raise the loss;
3. tentatively applies each layer's candidates in the replica, measures the real loss and
   keeps the one flip that raises it most (`gradient.py`);
4. applies that flip to the ONNX bytes and measures accuracy on the test split in ONNX
   Runtime from those bytes (`attacked.py`).
When the graph cannot be replicated or torch is missing, a gradient-free loss oracle in ONNX
Runtime chooses instead (`oracle.py`). `seeds.py` repeats the search over seeded attack
batches and sets it beside random flips at the same budgets.
"""

from qtool.faults.search.attacked import split_data
from qtool.faults.search.progressive import (
    SearchResult,
    SearchStep,
    progressive_search,
    write_search,
)
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
