"""The data-set names most stages import, in one place (`from qtool.data.datasets import ...`).

The code lives in the modules named below; this module keeps the import line that eval,
quantise, campaigns, the bit search, training and export have always used.
"""

from __future__ import annotations

from qtool.data.dataset import SPLITS, Dataset, DataSpec
from qtool.data.shaping import fit_to_input, normalize, resize_images
from qtool.data.sources import SOURCES, load_dataset, parse_spec, spec_help

__all__ = [
    "SOURCES",
    "SPLITS",
    "DataSpec",
    "Dataset",
    "fit_to_input",
    "load_dataset",
    "normalize",
    "parse_spec",
    "resize_images",
    "spec_help",
]
