"""One injection: draw N eligible bits of a model file and hit them, in memory, logged.

The model stays a bytearray throughout: a fault is a byte edit at an offset found by
`qtool.modelfile.locate`, so injection costs microseconds per bit and nothing else in the
file changes (`cmp -l original flipped` lists exactly the faulted bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qtool.errors import QtoolError
from qtool.faults.storage.manifest import SourceRecord, build_manifest, flip_entry, tensor_record
from qtool.faults.storage.selection import FlipSettings
from qtool.faults.storage.space import BitRef, bit_space
from qtool.faults.storage.targets import Target, prepare_bytes, select_targets
from qtool.modelfile.buffers import ModelFiles, read_model_files, sha256_hex, sha256_pair


@dataclass
class Injection:
    """The outcome of `inject`: edited buffers plus the manifest describing every change."""

    files: ModelFiles
    manifest: dict
    targets: list[Target]
    flips: list[BitRef]


def inject(path: str | Path, settings: FlipSettings, files: ModelFiles | None = None) -> Injection:
    """Hit `settings.bits` distinct eligible bits of the model at `path`, in memory."""
    files = read_model_files(path) if files is None else files
    targets = select_targets(files.main, settings)
    # sha256 of the main file is computed below together with the flipped one (two threads),
    # unless a conversion changes the bytes first
    source_sha = {name: sha256_hex(buf) for name, buf in files.external.items()}
    if any(not t.loc.flippable for t in targets):
        source_sha[""] = sha256_hex(files.main)
    targets, converted, originals = prepare_bytes(files, targets, settings.positions)
    if not targets:
        raise QtoolError(
            f"{path}: no eligible bits ({settings.describe()}); try all targets or other positions",
            param="targets",
        )
    buffers = files.buffers()
    fault = settings.fault_model
    space = bit_space(targets, buffers, fault)
    if settings.bits > space.total:
        raise QtoolError(
            f"{settings.bits} is more than the {space.total} eligible bits of {path} "
            f"({settings.describe()}, fault={settings.fault}); lower it or widen the selection",
            param="bits",
        )
    flips = fault.draw(space, settings.bits, np.random.default_rng(settings.seed), buffers)
    patches = fault.patches(buffers, (targets[f.target].site(f.word, f.bit) for f in flips))
    flippable_sha, flipped_sha = sha256_pair(files.main, patches.get(None, {}))
    source_sha.setdefault("", flippable_sha)
    flipped = {"": flipped_sha}
    for name, buf in files.external.items():
        flipped[name] = sha256_pair(buf, patches[name])[1] if name in patches else source_sha[name]
    entries = []
    for f in flips:  # one at a time, so each entry logs the bytes it found and left
        t = targets[f.target]
        site = t.site(f.word, f.bit)
        buf = buffers[site.file]
        old_word, old_byte = t.word_bytes(buf, f.word), buf[site.offset]
        fault.apply(buffers, [site])
        entries.append(
            flip_entry(
                t, f.word, f.bit, old_word, t.word_bytes(buf, f.word), old_byte, buf[site.offset]
            )
        )
    per_target = space.per_target()
    eligible = [tensor_record(t, int(per_target[i])) for i, t in enumerate(targets)]
    source = SourceRecord(source_sha, flippable_sha, converted, originals)
    manifest = build_manifest(
        path, source, flipped, settings, settings.seed, (space.total, eligible), entries
    )
    return Injection(files, manifest, targets, flips)
