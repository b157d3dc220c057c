"""Check a bundle against its manifest; name what changed; repair it from the ECC parity.

Detection needs no ECC: file sha256s say that something changed, the per-initializer sha256
and 4 KiB CRC32 blocks say which tensor and where. With ECC, the parity of the current bytes
is recomputed (fast, vectorised) and only chunks whose parity differs are decoded, which
gives the exact byte, hence the element index and bit, and the original value.

With a trust list the manifest's signature is checked first (`signing`): an unsigned bundle,
a bad signature, an untrusted key or a manifest changed after signing is refused before any
file is compared with a manifest nobody vouches for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from qtool.deploy.archive import is_archive, opened_bundle
from qtool.deploy.ecc import EccParams, damaged_chunks, encode_covers, repair
from qtool.deploy.manifest import (
    BLOCK,
    changed_blocks,
    read_manifest,
    read_manifest_bytes,
    safe_member,
    unlisted_files,
)
from qtool.deploy.signing import SignatureStatus, check_signature
from qtool.errors import QtoolError
from qtool.modelfile.load import sha256_file
from qtool.outputs import atomic_write


@dataclass
class BitChange:
    offset: int
    element: int
    bit: int
    old_byte: int
    new_byte: int


@dataclass
class TensorChange:
    name: str
    file: str
    blocks: list[int]
    bits: list[BitChange] = field(default_factory=list)


@dataclass
class VerifyResult:
    bundle: str
    intact: bool
    files_checked: int
    changed_files: list[str]
    missing_files: list[str]
    tensors: list[TensorChange]
    outside_tensors: list[dict]
    ecc_used: bool
    uncorrectable_chunks: dict[str, list[int]]
    length_changed: dict[str, list[int]] = field(default_factory=dict)
    repaired: bool = False
    repaired_files: list[str] = field(default_factory=list)
    manifest_sha256: str = ""
    signature: SignatureStatus | None = None
    unlisted_files: list[str] = field(default_factory=list)

    @property
    def changed_bytes(self) -> int:
        inside = sum(len(t.bits) for t in self.tensors)
        return inside + sum(1 for _ in self.outside_tensors)


def verify(
    path: Path,
    *,
    do_repair: bool = False,
    expect_manifest_sha256: str | None = None,
    trust: dict | None = None,
) -> VerifyResult:
    """Verify a bundle folder or archive; with `do_repair`, fix a folder bundle in place.

    `trust` is a trust list from `signing.load_trust`; with it, a bundle without a valid
    signature by a listed key raises `SignatureRefused` (exit 1) before anything else.
    """
    path = Path(path)
    if not path.exists():
        raise QtoolError(f"bundle {path} does not exist: check the path")
    if is_archive(path):
        if do_repair:
            raise QtoolError(
                f"an archive is not repaired in place; extract {path} first, then repair the "
                "folder",
                param="repair",
            )
        with opened_bundle(path, prefix="qtool-verify-") as root:
            result = _verify_folder(root, False, expect_manifest_sha256, trust, str(path))
            result.bundle = str(path)
            return result
    if path.is_file():
        raise QtoolError(f"{path} is neither a bundle folder nor a .tar.gz/.zip bundle archive")
    return _verify_folder(path, do_repair, expect_manifest_sha256, trust, str(path))


def _verify_folder(
    folder: Path, do_repair: bool, expected: str | None, trust: dict | None, label: str
) -> VerifyResult:
    # The manifest is read once: the bytes hashed and signature-checked are the ones parsed.
    data = read_manifest_bytes(folder) if folder.is_dir() else None
    manifest_sha = hashlib.sha256(data).hexdigest() if data is not None else ""
    if expected and manifest_sha != expected.lower():
        raise QtoolError(
            f"manifest.json of {folder} has sha256 {manifest_sha[:16]}..., not the expected "
            f"{expected[:16]}...; the manifest itself was replaced",
            param="manifest_sha256",
        )
    signature = check_signature(folder, trust, label, data) if data is not None else None
    manifest = read_manifest(folder, data)
    changed, missing = _changed_files(folder, manifest)
    unlisted = unlisted_files(folder, manifest)
    result = VerifyResult(
        bundle=str(folder),
        intact=not changed and not missing and not unlisted,
        files_checked=len(manifest["files"]),
        changed_files=changed,
        missing_files=missing,
        tensors=[],
        outside_tensors=[],
        ecc_used=False,
        uncorrectable_chunks={},
        manifest_sha256=manifest_sha,
        signature=signature,
        unlisted_files=unlisted,
    )
    if result.intact:
        return result
    contents = {rel: safe_member(folder, rel).read_bytes() for rel in changed}
    result.tensors = changed_tensors(manifest, contents)
    repaired = _locate_with_ecc(folder, manifest, contents, result)
    if do_repair and (changed or missing):  # unlisted files are reported, never deleted
        _repair_files(folder, manifest, result, repaired)
    return result


def _changed_files(folder: Path, manifest: dict) -> tuple[list[str], list[str]]:
    """(changed, missing) files: size or sha256 differs from the manifest, or absent."""
    changed, missing = [], []
    for rel, info in manifest["files"].items():
        target = safe_member(folder, rel)
        if not target.is_file():
            missing.append(rel)
        elif target.stat().st_size != info["bytes"] or sha256_file(target) != info["sha256"]:
            changed.append(rel)
    return changed, missing


def changed_tensors(manifest: dict, contents: dict[str, bytes]) -> list[TensorChange]:
    """The initializers whose bytes in `contents` (file -> bytes) differ from the manifest,
    with their changed 4 KiB blocks. Files absent from `contents` are skipped."""
    changes = []
    for record in manifest["initializers"]:
        data = contents.get(record["file"])
        if data is None:
            continue
        piece = data[record["offset"] : record["offset"] + record["length"]]
        if len(piece) == record["length"] and hashlib.sha256(piece).hexdigest() == record["sha256"]:
            continue
        changes.append(TensorChange(record["name"], record["file"], changed_blocks(record, piece)))
    return changes


def _locate_with_ecc(
    folder: Path, manifest: dict, contents: dict[str, bytes], result: VerifyResult
) -> dict[str, bytes]:
    """Decode the damaged chunks of each changed file the parity covers: the corrected bytes
    name element and bit. Returns the decoded contents by file."""
    ecc = manifest.get("ecc")
    if not ecc or ecc["file"] in result.missing_files:
        return {}
    parity_all = safe_member(folder, ecc["file"]).read_bytes()
    params = EccParams(int(ecc["nsym"]))
    repaired: dict[str, bytes] = {}
    for cover in ecc["covers"]:
        rel = cover["file"]
        if rel not in contents:
            continue
        result.ecc_used = True
        data = contents[rel]
        if len(data) != cover["bytes"]:  # bytes inserted/removed: not a bit-level fault
            result.length_changed[rel] = [cover["bytes"], len(data)]
            continue
        start = cover["parity_offset"]
        parity = parity_all[start : start + cover["parity_bytes"]]
        fixed = repair(data, parity, params, damaged_chunks(data, parity, params))
        if fixed.uncorrectable_chunks:
            result.uncorrectable_chunks[rel] = fixed.uncorrectable_chunks
        _attribute_bits(manifest, rel, data, fixed.data, fixed.corrected_offsets, result)
        repaired[rel] = fixed.data
    return repaired


def _attribute_bits(
    manifest: dict,
    rel: str,
    current: bytes,
    original: bytes,
    offsets: list[int],
    result: VerifyResult,
) -> None:
    """Map each corrected byte to its tensor, element and bit (or to the non-tensor bytes)."""
    by_name = {t.name: t for t in result.tensors}
    records = [r for r in manifest["initializers"] if r["file"] == rel]
    for offset in sorted(offsets):
        record = next(
            (r for r in records if r["offset"] <= offset < r["offset"] + r["length"]), None
        )
        diff = current[offset] ^ original[offset]
        if record is None:
            result.outside_tensors.append(
                {"file": rel, "offset": offset, "old": original[offset], "new": current[offset]}
            )
            continue
        change = by_name.get(record["name"])
        if change is None:
            change = TensorChange(record["name"], rel, [(offset - record["offset"]) // BLOCK])
            result.tensors.append(change)
            by_name[record["name"]] = change
        local = offset - record["offset"]
        itemsize = max(int(record["itemsize"]), 1)
        for bit_in_byte in range(8):
            if diff >> bit_in_byte & 1:
                change.bits.append(
                    BitChange(
                        offset=offset,
                        element=local // itemsize,
                        bit=(local % itemsize) * 8 + bit_in_byte,
                        old_byte=original[offset],
                        new_byte=current[offset],
                    )
                )


def _repair_files(
    folder: Path, manifest: dict, result: VerifyResult, repaired: dict[str, bytes]
) -> None:
    if result.missing_files:
        raise QtoolError(
            f"cannot repair {folder}: missing files {', '.join(result.missing_files)}; "
            "restore them from the original bundle",
            param="repair",
        )
    if not manifest.get("ecc"):
        raise QtoolError(
            f"{folder} was packaged without ECC parity; it cannot be repaired, only replaced "
            "by a good copy",
            param="repair",
        )
    for rel in result.changed_files:
        if rel not in repaired:
            continue
        if rel in result.uncorrectable_chunks or rel in result.length_changed:
            continue
        expected = manifest["files"][rel]["sha256"]
        if hashlib.sha256(repaired[rel]).hexdigest() != expected:
            continue
        atomic_write(safe_member(folder, rel), repaired[rel])
        result.repaired_files.append(rel)
    ecc_file = manifest["ecc"]["file"]
    if ecc_file in result.changed_files and ecc_file not in result.repaired_files:
        # Parity damaged but the data decoded clean: rebuild parity from the verified data.
        _rebuild_parity(folder, manifest, result)
    still = [f for f in result.changed_files if f not in result.repaired_files]
    result.repaired = not still
    result.intact = result.repaired and not result.unlisted_files


def _rebuild_parity(folder: Path, manifest: dict, result: VerifyResult) -> None:
    ecc = manifest["ecc"]
    contents = []
    for cover in ecc["covers"]:
        data = safe_member(folder, cover["file"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != manifest["files"][cover["file"]]["sha256"]:
            return
        contents.append((cover["file"], data))
    blob, _ = encode_covers(contents, EccParams(int(ecc["nsym"])))
    if hashlib.sha256(blob).hexdigest() == manifest["files"][ecc["file"]]["sha256"]:
        atomic_write(safe_member(folder, ecc["file"]), blob)
        result.repaired_files.append(ecc["file"])
