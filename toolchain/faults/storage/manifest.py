"""The flip manifest: every faulted bit logged, so the change can be replayed and undone.

A manifest names each bit by tensor, word and bit (not only by byte offset) and records the
sha256 of the file before and after, the varint tensors converted to raw_data (with their
original bytes) and what was selected. Replaying it on the source gives the flipped file
byte for byte; undoing it on the flipped file gives the source back, byte for byte.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from qtool import __version__
from qtool.errors import QtoolError, WorkFailed, option
from qtool.faults.storage.models import BitSite, StuckAt
from qtool.faults.storage.selection import Selection
from qtool.faults.storage.targets import Target
from qtool.faults.words import LAYOUTS, decode_word, element_of
from qtool.modelfile.buffers import Buffers, ModelFiles, read_model_files, sha256_hex
from qtool.modelfile.locate import TensorLocation, locate_initializers
from qtool.modelfile.rewrite import replace_tensors, to_flippable
from qtool.modelfile.roles import TensorKey
from qtool.modelfile.summary import dtype_name
from qtool.readable import read_json

MANIFEST_FORMAT = "qtool-flip-manifest/1"


@dataclass
class SourceRecord:
    """What the manifest says about the file the faults were made on."""

    source_sha256: dict[str, str]  # "" -> the model file, names -> external-data files
    flippable_sha256: str  # the model file after varint tensors were converted
    converted: list[str]
    originals: dict[TensorKey, bytes]


def flip_entry(
    t: Target, word: int, bit: int, old_word: bytes, new_word: bytes, old_byte: int, new_byte: int
) -> dict:
    """One manifest entry: where the faulted bit is and what it changed (random or chosen)."""
    site = t.site(word, bit)
    flat, coords = element_of(t.loc.data_type, t.loc.dims, word, bit)
    return {
        "tensor": t.loc.name,
        "role": t.role,
        "graph": t.loc.graph,
        "dtype": dtype_name(t.loc.data_type),
        "flat_index": flat,
        "coords": coords,
        "word": word,
        "bit": bit,
        "file": t.loc.file,
        "byte_offset": site.offset,
        "bit_in_byte": site.bit,
        "old_value": decode_word(t.loc.data_type, old_word, bit),
        "new_value": decode_word(t.loc.data_type, new_word, bit),
        "old_byte": old_byte,
        "new_byte": new_byte,
    }


def tensor_record(t: Target, bits: int) -> dict:
    """An eligible tensor as the manifest lists it."""
    return {
        "tensor": t.loc.name,
        "graph": t.loc.graph,
        "role": t.role,
        "dtype": dtype_name(t.loc.data_type),
        "bits": bits,
    }


def build_manifest(
    path: str | Path,
    source: SourceRecord,
    flipped_sha256: dict[str, str],
    selection: Selection,
    seed: int,
    eligible: tuple[int, list[dict]],
    entries: list[dict],
) -> dict:
    """The manifest (key order is part of the format: reports diff cleanly across runs).

    `flipped_sha256` maps "" to the flipped model file and names to external-data files;
    `eligible` is (eligible bits, eligible tensor records).
    """
    return {
        "format": MANIFEST_FORMAT,
        "qtool_version": __version__,
        "model": str(path),
        "source_sha256": source.source_sha256[""],
        "source_files_sha256": {k: v for k, v in source.source_sha256.items() if k},
        "flippable_sha256": source.flippable_sha256,
        "converted_to_raw_data": source.converted,
        "converted_originals": [
            {"graph": g, "tensor": n, "tensor_proto_base64": base64.b64encode(b).decode()}
            for (g, n), b in source.originals.items()
        ],
        "flipped_sha256": flipped_sha256[""],
        "flipped_files_sha256": {k: v for k, v in flipped_sha256.items() if k},
        "seed": seed,
        "bits": len(entries),
        "fault": selection.fault,
        "targets": selection.targets_text,
        "layers": selection.layers,
        "positions": selection.positions_text,
        "eligible_bits": eligible[0],
        "eligible_tensors": eligible[1],
        "flips": entries,
    }


def load_manifest(path: str | Path) -> dict:
    """A flip manifest, read as a plain file within the json limits and checked field by
    field where replay relies on it (a hand-edited or hostile manifest is one line)."""
    path = Path(path)
    if not path.exists():
        raise QtoolError(f"manifest {path} does not exist: give the manifest that flip wrote")
    manifest = read_json(path, "manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise QtoolError(f"{path} is not a qtool flip manifest (format {MANIFEST_FORMAT})")
    problem = _schema_problem(manifest)
    if problem:
        raise QtoolError(f"flip manifest {path}: {problem}; give the manifest that flip wrote")
    return manifest


def _schema_problem(manifest: dict) -> str | None:
    def count(v, top: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= top

    for key in ("source_sha256", "flipped_sha256"):
        if not isinstance(manifest.get(key), str):
            return f"{key} is not a sha256"
    flips = manifest.get("flips")
    if not isinstance(flips, list):
        return "'flips' is not a list"
    for i, e in enumerate(flips):
        ok = (
            isinstance(e, dict)
            and isinstance(e.get("graph"), str)
            and isinstance(e.get("tensor"), str)
            and count(e.get("word"), 2**62)
            and count(e.get("bit"), 63)
            and count(e.get("old_byte"), 255)
            and count(e.get("new_byte"), 255)
            and "file" in e
            and (e["file"] is None or isinstance(e["file"], str))
            and isinstance(e.get("role", "other"), str)
        )
        if not ok:
            return f"flips[{i}] lacks graph, tensor, file, word, bit, old_byte or new_byte"
    originals = manifest.get("converted_originals") or []
    if not isinstance(originals, list) or not all(
        isinstance(o, dict) and all(isinstance(o.get(k), str) for k in ORIGINAL_KEYS)
        for o in originals
    ):
        return "converted_originals is not a list of graph, tensor, tensor_proto_base64"
    return None


ORIGINAL_KEYS = ("graph", "tensor", "tensor_proto_base64")


def entry_site(
    path: str | Path, entry: dict, by_key: dict[TensorKey, TensorLocation], inline: bool = False
) -> BitSite:
    """Where a manifest entry's bit is, found by tensor name and word index."""
    loc = by_key.get((entry["graph"], entry["tensor"]))
    if loc is None or not loc.flippable or (inline and loc.file is not None):
        raise QtoolError(
            f"{path} has no flippable tensor {entry['tensor']!r} (graph {entry['graph']}) "
            "that the manifest names; is it the right model?"
        )
    size = LAYOUTS[loc.data_type].size
    word, bit = int(entry["word"]), int(entry["bit"])
    if word * size >= loc.length:
        raise QtoolError(f"manifest entry for {entry['tensor']!r} lies outside the tensor")
    return Target(loc, entry.get("role", "other"), size, (bit,)).site(word, bit)


def replay_entries(
    path: str | Path,
    buffers: Buffers,
    entries: list[dict],
    *,
    undo: bool = False,
    check: bool = True,
    inline: bool = False,
) -> None:
    """Write each entry's recorded bit value (the old one when undoing) into the buffers.

    With `check`, each byte must hold what the manifest says it held before; entries that
    share a byte are replayed in order (undone in reverse), as they were made.
    """
    by_key = {(loc.graph, loc.name): loc for loc in locate_initializers(buffers[None])}
    for entry in list(reversed(entries)) if undo else entries:
        site = entry_site(path, entry, by_key, inline=inline)
        buf = buffers.get(None if inline else entry["file"])
        if buf is None:
            raise QtoolError(f"{path} has no external-data file {entry['file']!r}")
        before, after = (
            (entry["new_byte"], entry["old_byte"])
            if undo
            else (entry["old_byte"], entry["new_byte"])
        )
        if check and buf[site.offset] != before:
            raise WorkFailed(
                f"byte {site.offset} of {entry['file'] or path} is {buf[site.offset]}, the "
                f"manifest expects {before}; the manifest does not match this file"
            )
        StuckAt((after >> site.bit) & 1).apply(buffers, [site])


def replay(path: str | Path, manifest: dict, undo: bool = False, force: bool = False) -> ModelFiles:
    """Re-apply (or undo) a manifest's faults on a model, checking it is the model they
    were made on (source sha256 for apply, flipped sha256 for undo) unless `force`."""
    files = read_model_files(path)
    sha = files.sha256()
    expect = manifest["flipped_sha256"] if undo else manifest["source_sha256"]
    matches = sha[""] == expect
    if not matches and not force:
        what = "flipped model the manifest produced" if undo else "model the manifest was made on"
        raise QtoolError(
            f"{path} is not the {what} (sha256 {sha[''][:12]}... != {expect[:12]}...); "
            f"pass {option('force')} to apply the flips by tensor name and bit anyway"
        )
    if not undo and manifest.get("converted_to_raw_data"):
        keys = {(o["graph"], o["tensor"]) for o in manifest["converted_originals"]}
        files.main[:] = to_flippable(files.main, only=keys)[0]
    replay_entries(path, files.buffers(), manifest["flips"], undo=undo, check=matches)
    if undo and manifest.get("converted_originals"):
        bodies = {
            (o["graph"], o["tensor"]): base64.b64decode(o["tensor_proto_base64"])
            for o in manifest["converted_originals"]
        }
        files.main[:] = replace_tensors(files.main, bodies)
    if matches:
        final = sha256_hex(files.main)
        expect_out = manifest["source_sha256"] if undo else manifest["flipped_sha256"]
        if final != expect_out:
            raise WorkFailed(
                f"replaying the manifest on {path} gave sha256 {final[:12]}..., not the "
                f"expected {expect_out[:12]}...; the output was not written"
            )
    return files
