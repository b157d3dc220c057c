"""`qtool verify`: is this bundle the model that was validated? If not, what changed?"""

from __future__ import annotations

from pathlib import Path

import click

from qtool.commands.options import (
    check_outputs,
    force_option,
    json_option,
    trust_list,
    trust_option,
    write_json_report,
)
from qtool.deploy.verify import verify
from qtool.report import show, table


@click.command("verify")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--repair", is_flag=True, help="Restore corrupted bytes from the ECC parity.")
@click.option(
    "--manifest-sha256",
    default=None,
    help="Also require manifest.json to have this sha256 (printed by package).",
)
@trust_option
@json_option
@force_option
def command(
    bundle: Path, repair: bool, manifest_sha256: str | None, trust, json_path, force
) -> None:
    """Check BUNDLE's signature, then every file, tensor and 4 KiB block against its manifest.

    Exit 0 when intact (or fully repaired), 1 when anything changed or, with --trust, when the
    bundle is unsigned, its signature is bad, its key is not trusted or its manifest changed
    after signing; 2 on bad input.

    \b
    Examples:
      qtool verify bundle/ --trust release.key.pub
      qtool verify bundle/ --trust old.key.pub,new.key.pub --repair
    """
    check_outputs(force, [bundle], json_path=json_path)
    result = verify(
        bundle, do_repair=repair, expect_manifest_sha256=manifest_sha256, trust=trust_list(trust)
    )
    write_json_report(json_path, {**vars(result), "changed_bytes": result.changed_bytes})
    signer = result.signature.summary if result.signature else ""
    if result.intact and not result.repaired:
        show(f"OK: {bundle} is intact ({result.files_checked} files match manifest.json); {signer}")
        return
    rows = []
    for t in result.tensors:
        where = ", ".join(str(b) for b in t.blocks[:8]) + (" …" if len(t.blocks) > 8 else "")
        bits = "; ".join(f"element {b.element} bit {b.bit}" for b in t.bits[:6])
        if len(t.bits) > 6:
            bits += f"; … ({len(t.bits)} bits)"
        rows.append([t.name, t.file, where, bits or "(no ECC: block level only)"])
    for o in result.outside_tensors[:20]:
        rows.append(["(outside tensors)", o["file"], f"byte {o['offset']}", "graph/metadata byte"])
    if rows:
        show(table("changed tensors", ["tensor", "file", "4 KiB blocks", "located bits"], rows))
    for rel in result.missing_files:
        show(f"missing: {rel}")
    for rel in result.unlisted_files:
        show(f"unlisted: {rel} is not in manifest.json (a bundle holds only the files it lists)")
    for rel in result.changed_files:
        if not any(t.file == rel for t in result.tensors) and not any(
            o["file"] == rel for o in result.outside_tensors
        ):
            show(f"changed: {rel}")
    for rel, (was, now) in result.length_changed.items():
        show(f"length changed: {rel} is {now} bytes, was {was}; bytes were inserted or removed")
    for rel, chunks in result.uncorrectable_chunks.items():
        show(f"uncorrectable: {rel}, {len(chunks)} chunk(s) beyond the ECC's reach")
    if result.repaired and result.intact:
        show(
            f"REPAIRED: {', '.join(result.repaired_files)} restored; sha256 matches the manifest; "
            f"{signer}"
        )
        return
    hint = "" if repair else " (qtool verify --repair restores it when packaged with --ecc)"
    show(f"FAILED: {bundle} differs from its manifest{hint}")
    raise click.exceptions.Exit(1)
