"""The demo's package stage: a bundle with ECC, corrupted by a few flips, caught and repaired
by verify."""

from __future__ import annotations

from qtool.demo.context import (
    DEMO_PACKAGE_FLIPS,
    DEMO_PACKAGE_MODEL,
    DemoContext,
)
from qtool.report import info


def stage_package(ctx: DemoContext) -> None:
    """Bundle the INT8 CNN with ECC; corrupt it with a few flips; verify catches and repairs."""
    from qtool.deploy.bundle import package
    from qtool.deploy.verify import verify
    from qtool.faults import FlipSettings, inject
    from qtool.modelfile.rewrite import to_flippable

    rec = ctx.records.get(DEMO_PACKAGE_MODEL)
    if rec is None or "int8" not in rec.paths:
        return
    # flip writes varint-stored tensors as raw_data; ship that layout so a flip is only bits
    source = ctx.out_dir / f"{rec.name}.int8.deploy.onnx"
    source.write_bytes(to_flippable(rec.paths["int8"].read_bytes())[0])
    reports = [rec.paths[k] for k in ("int8_eval", "bench", "flips") if k in rec.paths]
    bundle = ctx.out_dir / "bundle"
    info(f"packaging {source.name} -> {bundle}/ (with ECC) and corrupting it")
    result = package(source, bundle, ecc=True, report_paths=reports, force=True)
    model_file = bundle / source.name
    flip = inject(model_file, FlipSettings(bits=DEMO_PACKAGE_FLIPS, seed=ctx.seed))
    model_file.write_bytes(bytes(flip.files.main))
    caught = verify(bundle)
    located = sum(len(t.bits) for t in caught.tensors)
    repaired = verify(bundle, do_repair=True)
    after = verify(bundle)
    verdict = "caught" if not caught.intact else "MISSED"
    fixed = "repaired" if repaired.repaired and after.intact else "NOT repaired"
    rec.results["bundle"] = f"{DEMO_PACKAGE_FLIPS} flips {verdict}, {located} bits located, {fixed}"
    rec.results["ecc_overhead"] = result.ecc["overhead"] if result.ecc else None
    ctx.tables.append(
        (
            f"bundle {bundle}: {DEMO_PACKAGE_FLIPS} random bit flips written into its model file",
            ["tensor", "element", "bit", "verify", "repair"],
            [
                [t.name, b.element, b.bit, "caught", "restored" if repaired.repaired else "no"]
                for t in caught.tensors
                for b in t.bits
            ],
        )
    )
