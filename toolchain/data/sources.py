"""The data sources: one registry entry per kind of spec, and the spec functions it drives.

A spec is `NAME`, or `NAME:ARGUMENT` for a source that takes one, optionally ending in
`:train`, `:val` or `:test`. `parse_spec`, `load_dataset`, the one-line usage in error
messages and the per-source help in `--help` are all read off `SOURCES`, so adding a
source is adding an entry here (see the recipe in `qtool.data`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qtool.data import dicom, folder, npz, sklearn_sets, synthetic
from qtool.data.dataset import SPLITS, Dataset, DataSpec
from qtool.errors import QtoolError
from qtool.registry import Registry

# (parsed spec, split to load, whether that split was asked for rather than defaulted)
Loader = Callable[[DataSpec, str, bool], Dataset]


@dataclass(frozen=True)
class Source:
    """One kind of data set: how its spec is written, one help line, how it loads a split."""

    name: str
    help: str
    load: Loader
    argument: str | None = None  # metavar of the part after "NAME:", None for a bare name
    check: Callable[[str], None] | None = None  # rejects a bad argument while parsing

    @property
    def usage(self) -> str:
        return self.name if self.argument is None else f"{self.name}:{self.argument}"


SOURCES: Registry[Source] = Registry("data source")


def _add(source: Source) -> None:
    SOURCES.add(source.name, source)


_add(
    Source(
        "digits",
        "scikit-learn's 8x8 handwritten digits (1797 images, 10 classes)",
        sklearn_sets.load_digits,
    )
)
_add(
    Source(
        "breast-cancer",
        "scikit-learn's Wisconsin diagnostic table (569 x 30; malignant is positive)",
        sklearn_sets.load_breast_cancer,
    )
)
_add(
    Source(
        "npz",
        "MedMNIST-layout arrays: train_images, train_labels, val_..., test_...",
        npz.load,
        argument="PATH",
    )
)
_add(
    Source(
        "folder",
        "one sub-folder of PNG/JPEG files per class, optionally under train/val/test",
        folder.load,
        argument="PATH",
    )
)
_add(
    Source(
        "dicom",
        "DICOM files: one sub-folder per class, or labels.csv (file or SOPInstanceUID, class)",
        dicom.load,
        argument="FOLDER",
    )
)


_add(
    Source(
        "synthetic",
        "seeded faint-lesion images for testing the pipeline (not accuracy claims); KIND "
        "lesion or lesion-rgb, SIZE 28-224 px (default 64)",
        synthetic.load,
        argument="KIND[:SIZE]",
        check=synthetic.check,
    )
)


def spec_help() -> str:
    """One line naming every way to write a spec (used in error messages)."""
    usages = [s.usage for s in SOURCES]
    listed = ", ".join(usages[:-1]) + f" or {usages[-1]}" if len(usages) > 1 else usages[0]
    splits = ", ".join(f":{s}" for s in SPLITS[:-1]) + f" or :{SPLITS[-1]}"
    return f"use {listed}, optionally ending in {splits}"


def sources_help() -> str:
    """One line per source, for a command's --help."""
    lines = [f"  {s.usage:<15} {s.help}" for s in SOURCES]
    return "\b\nData set specs (append :train, :val or :test for a split):\n" + "\n".join(lines)


def parse_spec(spec: str) -> DataSpec:
    """Split a spec string into source, argument and optional split; reject unknown sources."""
    text = spec.strip()
    split = None
    head, sep, tail = text.rpartition(":")
    if sep and tail in SPLITS:
        text, split = head, tail
    name, sep, argument = text.partition(":")
    canonical = SOURCES.canonical(name)
    if canonical is not None:
        source = SOURCES.get(canonical)
        if source.argument is None and not sep:
            return DataSpec(canonical, None, split)
        if source.argument is not None and argument:
            if source.check is not None:
                source.check(argument)
            return DataSpec(canonical, argument, split)
    raise QtoolError(f"unknown data set spec {spec!r}: {spec_help()}")


def load_dataset(
    spec: str,
    split: str | None = None,
    default_split: str = "test",
    *,
    param: str | None = None,
) -> Dataset:
    """Load one split. An explicit `split` argument wins over the spec's suffix.

    Every error about the spec is raised naming `param` (the argument that carried it).
    """
    try:
        parsed = parse_spec(spec)
        chosen = split or parsed.split or default_split
        if chosen not in SPLITS:
            raise QtoolError(f"unknown split {chosen!r}: use one of {', '.join(SPLITS)}")
        return SOURCES.get(parsed.source).load(parsed, chosen, bool(split or parsed.split))
    except QtoolError as exc:
        if exc.param is None:
            exc.param = param
        raise
