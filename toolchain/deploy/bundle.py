"""Bundles a CPU server can trust: model files, a manifest of hashes, optional RS parity.

A bundle is a folder (or a .tar.gz/.zip of one, see `archive`) holding the model file(s)
unchanged, `manifest.json` and `MODEL_CARD.md`. The manifest records a sha256 per file and,
per initializer, where its bytes lie in which file, their sha256 and a CRC32 per 4 KiB block,
so `verify` can name the tensor and block that changed. With ECC, `model.ecc` holds
Reed-Solomon parity over every model byte (weights and graph), so a few corrupted bytes per
chunk are located to the element and bit, and repaired. With a signing key, `manifest.sig`
holds an Ed25519 signature over the manifest (see `signing`), which lists every other file.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import onnx

from qtool import __version__
from qtool.deploy.archive import FORMAT_SUFFIXES, write_archive
from qtool.deploy.ecc import DEFAULT_NSYM, SCHEME, EccParams, encode_covers
from qtool.deploy.manifest import (
    BLOCK,
    CARD,
    ECC_FILE,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    REPORTS,
    block_crcs,
    safe_member,
)
from qtool.deploy.model_card import render_model_card
from qtool.deploy.runtime import validated_runtime
from qtool.deploy.signing import key_id_of, load_private_key, sign_manifest
from qtool.errors import QtoolError
from qtool.machine import cpu_info
from qtool.modelfile.load import load_model, sha256_file
from qtool.modelfile.locate import locate_initializers
from qtool.modelfile.metadata import qtool_metadata
from qtool.modelfile.roles import initializer_roles
from qtool.modelfile.summary import dtype_name, graph_inputs, value_spec
from qtool.outputs import check_output_path, replace_dir, staging_dir, to_jsonable
from qtool.readable import read_json
from qtool.runtimes.providers import DEFAULT_PRECISION

BUNDLE_FORMATS = ("dir", "tar.gz", "zip")


# --- what the manifest records ---------------------------------------------------------------


def model_files(model_path: Path) -> list[str]:
    """The model file and the external-data files it names, relative to its folder."""
    proto = onnx.load(str(model_path), load_external_data=False)
    names = [model_path.name]
    for tensor in onnx.external_data_helper._get_all_tensors(proto):
        if onnx.external_data_helper.uses_external_data(tensor):
            loc = onnx.external_data_helper.ExternalDataInfo(tensor).location
            rel = PurePosixPath(loc).as_posix()
            if rel not in names:
                names.append(rel)
    return names


def initializer_records(folder: Path, model_file: str) -> list[dict]:
    """Per initializer: where its bytes are, their sha256 and per-4-KiB-block CRC32."""
    proto = onnx.load(str(folder / model_file), load_external_data=False)
    roles = initializer_roles(proto.graph)
    contents: dict[str, bytes] = {model_file: (folder / model_file).read_bytes()}
    records = []
    for loc in locate_initializers(contents[model_file], folder):
        file = model_file if loc.file is None else PurePosixPath(loc.file).as_posix()
        if file not in contents:
            contents[file] = safe_member(folder, file).read_bytes()
        data = memoryview(contents[file])[loc.offset : loc.offset + loc.length]
        records.append(
            {
                "name": loc.name,
                "graph": loc.graph,
                "role": roles.get(loc.name, "other"),
                "dtype": dtype_name(loc.data_type),
                "shape": list(loc.dims),
                "itemsize": loc.itemsize,
                "encoding": loc.encoding,
                "file": file,
                "offset": loc.offset,
                "length": loc.length,
                "sha256": hashlib.sha256(data).hexdigest(),
                "block_bytes": BLOCK,
                "crc32": block_crcs(data),
            }
        )
    return records


def versions() -> dict:
    import numpy
    import onnxruntime

    return {
        "qtool": __version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def read_reports(paths: list[Path]) -> dict[str, dict]:
    """JSON reports to bundle, by file name (a repeated name gets a leading `_`)."""
    advice = "give a JSON report written by qtool (eval, quantize, bench or flip)"
    reports: dict[str, dict] = {}
    for path in paths:
        if not path.exists():
            raise QtoolError(f"report {path} does not exist: {advice}", param="report_paths")
        payload = read_json(path, "report", param="report_paths")
        if not isinstance(payload, dict):
            raise QtoolError(f"report {path} is not a JSON object; {advice}", param="report_paths")
        name = path.name
        while name in reports:
            name = "_" + name
        reports[name] = payload
    return reports


# --- building the folder ---------------------------------------------------------------------


def _copy_model_files(model_path: Path, folder: Path) -> list[str]:
    files = model_files(model_path)
    for rel in files:
        src = safe_member(model_path.parent, rel) if rel != model_path.name else model_path
        dst = folder.joinpath(*PurePosixPath(rel).parts)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return files


def _describe(model: onnx.ModelProto, files: list[str], records: list[dict]) -> dict:
    """The manifest before files, reports and ECC are filled in."""
    meta = qtool_metadata(model)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {"file": files[0], "data_files": files[1:]},
        "files": {},
        "initializers": records,
        "inputs": [to_jsonable(v) for v in graph_inputs(model)],
        "outputs": [to_jsonable(value_spec(v)) for v in model.graph.output],
        "preprocessing": {
            "input_shape": meta.get("input_shape"),
            "normalization": meta.get("normalization"),
            "layout": "NCHW, [0, 1] before normalisation" if meta.get("input_shape") else None,
        },
        "class_names": meta.get("class_names"),
        "positive_class": meta.get("positive_class"),
        "dataset": meta.get("dataset"),
        "model_name": meta.get("model"),
        "quantization": meta.get("quantization"),
        "metadata": {p.key: p.value for p in model.metadata_props},
        "reports": {},
        "versions": versions(),
        "cpu": cpu_info(),
        "ecc": None,
    }


def _write_reports(folder: Path, reports: dict[str, dict]) -> None:
    (folder / REPORTS).mkdir()
    for name, payload in reports.items():
        (folder / REPORTS / name).write_text(json.dumps(payload, indent=2) + "\n")


def _write_parity(folder: Path, files: list[str], nsym: int) -> dict:
    """Write model.ecc over the model files; return the manifest's `ecc` entry."""
    params = EccParams(nsym)
    contents = [(rel, folder.joinpath(*PurePosixPath(rel).parts).read_bytes()) for rel in files]
    blob, covers = encode_covers(contents, params)
    (folder / ECC_FILE).write_bytes(blob)
    covered = sum(item["bytes"] for item in covers)
    return {
        "file": ECC_FILE,
        "scheme": SCHEME,
        "nsym": nsym,
        "chunk_bytes": params.chunk,
        "correctable_bytes_per_chunk": params.correctable,
        "covers": covers,
        "overhead": len(blob) / covered if covered else 0.0,
    }


def _file_hashes(folder: Path) -> dict[str, dict]:
    return {
        path.relative_to(folder).as_posix(): {
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
        }
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def build_bundle(
    model_path: Path,
    folder: Path,
    *,
    ecc: bool = False,
    nsym: int = DEFAULT_NSYM,
    reports: dict[str, dict] | None = None,
    intended_use: str | None = None,
    runtime: dict | None = None,
) -> dict:
    """Fill an empty `folder` with the bundle of `model_path`; return the manifest.
    `runtime` is the provider the model was validated on (deploy.runtime)."""
    model = load_model(model_path)
    files = _copy_model_files(model_path, folder)
    manifest = _describe(model, files, initializer_records(folder, model_path.name))
    manifest["runtime"] = runtime
    if reports:
        manifest["reports"] = reports
        _write_reports(folder, reports)
    if ecc:
        manifest["ecc"] = _write_parity(folder, files, nsym)
    (folder / CARD).write_text(render_model_card(manifest, intended_use))
    manifest["files"] = _file_hashes(folder)
    (folder / MANIFEST).write_text(json.dumps(to_jsonable(manifest), indent=2) + "\n")
    return manifest


# --- packaging -------------------------------------------------------------------------------


@dataclass
class PackageResult:
    out: Path
    files: dict[str, dict]
    initializers: int
    weight_bytes: int
    ecc: dict | None
    manifest_sha256: str
    seconds: float
    signed_by: str | None = None  # key id of the signing key
    runtime: dict | None = None


def _check_suffix(fmt: str, out: Path) -> None:
    """verify and predict tell an archive from a folder by its suffix, so an archive must
    have one (`--format zip --out plainname` would write a bundle nothing can open)."""
    suffixes = FORMAT_SUFFIXES.get(fmt, ())
    if suffixes and not out.name.endswith(suffixes):
        raise QtoolError(
            f"a {fmt} bundle's name must end in {' or '.join(suffixes)} (got {out.name}); "
            f"e.g. {out.name}{suffixes[0]}",
            param="out",
        )


def _check_args(fmt: str, nsym: int) -> None:
    if fmt not in BUNDLE_FORMATS:
        raise QtoolError(
            f"unknown bundle format {fmt!r}: use {', '.join(BUNDLE_FORMATS)}", param="fmt"
        )

    if not 2 <= nsym <= 128 or nsym % 2:
        raise QtoolError(
            f"parity bytes per codeword must be an even number from 2 to 128, got {nsym}",
            param="ecc_nsym",
        )


def package(
    model_path: Path,
    out: Path,
    *,
    fmt: str = "dir",
    ecc: bool = False,
    nsym: int = DEFAULT_NSYM,
    report_paths: list[Path] | None = None,
    intended_use: str | None = None,
    force: bool = False,
    sign_key: Path | None = None,
    provider: str | None = None,
    precision: str = DEFAULT_PRECISION,
) -> PackageResult:
    """Write the bundle of `model_path` to `out` (a folder, or an archive), atomically; with
    `sign_key` (an Ed25519 private key file), sign its manifest. With `provider`, the
    manifest records it as the provider the bundle was validated on (it must be usable here
    and load the model); predict then runs on it."""
    start = time.perf_counter()
    model_path, out = Path(model_path), Path(out)
    report_paths = [Path(p) for p in report_paths or []]
    _check_args(fmt, nsym)
    key = None if sign_key is None else load_private_key(Path(sign_key), param="sign_key")
    kind = "dir" if fmt == "dir" else "file"
    inputs = [model_path, *report_paths, *([] if sign_key is None else [Path(sign_key)])]
    check_output_path(out, force, inputs, kind=kind, param="out")
    _check_suffix(fmt, out)
    reports = read_reports(report_paths)
    runtime = None if provider is None else validated_runtime(model_path, provider, precision)
    with staging_dir(out) as staging:
        manifest = build_bundle(
            model_path,
            staging,
            ecc=ecc,
            nsym=nsym,
            reports=reports,
            intended_use=intended_use,
            runtime=runtime,
        )
        manifest_sha = sha256_file(staging / MANIFEST)
        if key is not None:
            sign_manifest(staging, key)
        if fmt == "dir":
            replace_dir(staging, out)
        else:
            write_archive(staging, out, fmt)
    return PackageResult(
        out=out,
        files=manifest["files"],
        initializers=len(manifest["initializers"]),
        weight_bytes=sum(r["length"] for r in manifest["initializers"]),
        ecc=manifest["ecc"],
        manifest_sha256=manifest_sha,
        seconds=time.perf_counter() - start,
        signed_by=None if key is None else key_id_of(key.public_key()),
        runtime=runtime,
    )
