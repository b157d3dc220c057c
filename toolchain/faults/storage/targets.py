"""Which stored tensors a storage fault may hit: chosen by graph role, never by names.

A `Target` is one eligible initializer: where its words are (file, byte offset, length, from
`qtool.modelfile.locate`), its role, and the bits of each word the selection allows.
"""

from __future__ import annotations

from dataclasses import dataclass

from qtool.errors import QtoolError
from qtool.faults.storage.models import BitSite
from qtool.faults.storage.selection import Selection
from qtool.faults.words import LAYOUTS, bit_positions, word_view
from qtool.modelfile.buffers import Buffers, ModelFiles
from qtool.modelfile.locate import TensorLocation, locate_initializers, tensor_bodies
from qtool.modelfile.rewrite import to_flippable
from qtool.modelfile.roles import TensorKey, graph_roles


@dataclass(frozen=True)
class Target:
    """An eligible tensor: where its words are and which bits of each word may be hit."""

    loc: TensorLocation
    role: str
    word: int  # bytes per stored word
    positions: tuple[int, ...]

    @property
    def words(self) -> int:
        return self.loc.length // self.word

    @property
    def key(self) -> TensorKey:
        return (self.loc.graph, self.loc.name)

    def site(self, word: int, bit: int) -> BitSite:
        """Where bit `bit` of stored word `word` is: file, byte offset, bit in that byte."""
        return BitSite(self.loc.file, self.loc.offset + word * self.word + bit // 8, bit % 8)

    def word_bytes(self, buf: bytes | bytearray, word: int) -> bytes:
        start = self.loc.offset + word * self.word
        return bytes(buf[start : start + self.word])

    def view(self, buffers: Buffers):
        """The tensor's stored words as little-endian unsigned ints (no copy)."""
        return word_view(buffers[self.loc.file], self.loc.offset, self.words, self.word)


def select_targets(
    model_bytes: bytes | bytearray,
    selection: Selection,
    locations: list[TensorLocation] | None = None,
) -> list[Target]:
    """Eligible tensors (by role, layer regex and bit positions) with their bit positions.

    Tensors whose encoding is not fixed-width in place (varint int32_data...) are included
    only as candidates; call `prepare_bytes` first to convert them.
    """
    wanted = selection.roles()
    pattern = selection.pattern()
    locations = locate_initializers(model_bytes) if locations is None else locations
    roles, readers = graph_roles(model_bytes)
    out: list[Target] = []
    role_matches = 0
    for loc in locations:
        if loc.data_type not in LAYOUTS or loc.length == 0:
            continue
        role = roles.get((loc.graph, loc.name), "other")
        if wanted is not None and role not in wanted:
            continue
        role_matches += 1
        if pattern is not None:
            names = [loc.name, *readers.get((loc.graph, loc.name), [])]
            if not any(pattern.search(n) for n in names):
                continue
        bits = bit_positions(loc.data_type, selection.positions)
        if bits:
            out.append(Target(loc, role, LAYOUTS[loc.data_type].size, bits))
    if pattern is not None and role_matches and not out:
        raise QtoolError(
            f"{selection.layers!r} matches none of the {role_matches} "
            f"{selection.targets_text} tensors (it is searched in tensor names and the names "
            "of the nodes reading them); see `qtool inspect` for the names",
            param="layers",
        )
    return out


def prepare_bytes(
    files: ModelFiles, targets: list[Target], positions: tuple[str | int, ...]
) -> tuple[list[Target], list[str], dict[TensorKey, bytes]]:
    """Convert selected varint-encoded tensors to raw_data (only those) and re-locate.

    Returns the flippable targets, the converted names and their original TensorProto bytes
    (kept in the manifest so an undo can restore the file byte for byte).
    """
    # in file order (a set's order would change with the hash seed and so the manifest)
    need = list(dict.fromkeys(t.key for t in targets if not t.loc.flippable))
    if not need:
        return targets, [], {}
    bodies = tensor_bodies(files.main)
    originals = {k: bodies[k] for k in need if k in bodies}
    new, converted = to_flippable(files.main, only=set(need))
    files.main[:] = new
    by_key = {(loc.graph, loc.name): loc for loc in locate_initializers(files.main)}
    out = []
    for t in targets:
        loc = by_key.get(t.key, t.loc)
        if loc.flippable:
            out.append(Target(loc, t.role, t.word, bit_positions(loc.data_type, positions)))
    return out, converted, originals
