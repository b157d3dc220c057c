"""Bundles a CPU server can trust: model files, a manifest of hashes, optional RS parity.

A bundle is a folder (or a .tar.gz/.zip of one) holding the model file(s) unchanged,
`manifest.json` and `MODEL_CARD.md`. The manifest records a sha256 per file and, per
initializer, where its bytes lie in which file, their sha256 and a CRC32 per 4 KiB block, so
`verify` can name the tensor and block that changed. With `--ecc`, `model.ecc` holds
Reed-Solomon parity over every model byte (weights and graph), so a few corrupted bytes per
chunk are located to the element and bit, and repaired.

Every path read from a manifest or an archive is checked to stay inside the bundle.
"""

from __future__ import annotations

import json
import platform
import shutil
import tarfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import onnx

from qtool import __version__
from qtool.deploy.ecc import EccParams, encode_parity
from qtool.errors import QtoolError
from qtool.modelfile.load import load_model, sha256_file
from qtool.modelfile.locate import locate_initializers
from qtool.modelfile.metadata import qtool_metadata
from qtool.modelfile.roles import initializer_roles
from qtool.modelfile.summary import dtype_name, graph_inputs, value_spec
from qtool.outputs import atomic_path, replace_dir, staging_dir, to_jsonable

FORMAT = "qtool-bundle"
FORMAT_VERSION = 1
BLOCK = 4096
MANIFEST = "manifest.json"
CARD = "MODEL_CARD.md"
ECC_FILE = "model.ecc"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")


# --- paths -----------------------------------------------------------------------------------


def safe_member(root: Path, relative: str) -> Path:
    """Resolve a path from a manifest or archive; refuse anything that leaves `root`."""
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or ".." in pure.parts or "\\" in relative:
        raise QtoolError(
            f"bundle path {relative!r} is absolute or climbs out of the bundle; refusing it"
        )
    target = root.joinpath(*pure.parts)
    resolved = target.resolve()
    root_resolved = root.resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise QtoolError(f"bundle path {relative!r} leads outside the bundle (symlink?); refusing")
    if target.is_symlink():
        raise QtoolError(f"bundle path {relative!r} is a symlink; bundles hold plain files only")
    return target


# --- model files -----------------------------------------------------------------------------


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


def block_crcs(data: bytes | memoryview) -> list[int]:
    return [zlib.crc32(data[i : i + BLOCK]) for i in range(0, len(data), BLOCK)] or [
        zlib.crc32(b"")
    ]


def initializer_records(folder: Path, model_file: str) -> list[dict]:
    """Per initializer: where its bytes are, their sha256 and per-4-KiB-block CRC32."""
    import hashlib

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


def cpu_info() -> dict:
    info = {"machine": platform.machine(), "processor": platform.processor(), "flags": []}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and "model" not in info:
                info["model"] = line.split(":", 1)[1].strip()
            if line.startswith(("flags", "Features")):
                info["flags"] = sorted(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return info


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


# --- reports ---------------------------------------------------------------------------------


def read_reports(paths: list[Path]) -> dict[str, dict]:
    """`--report` JSON files by file name; each must be a JSON object."""
    reports: dict[str, dict] = {}
    for path in paths:
        if not path.is_file():
            raise QtoolError(f"report {path} does not exist: pass a JSON file written by --json")
        try:
            payload = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise QtoolError(f"report {path} is not JSON ({exc}); pass a --json output") from exc
        if not isinstance(payload, dict):
            raise QtoolError(f"report {path} is not a JSON object; pass a --json output")
        name = path.name
        while name in reports:
            name = "_" + name
        reports[name] = payload
    return reports


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
    extra: dict = field(default_factory=dict)


def build_bundle(
    model_path: Path,
    folder: Path,
    *,
    ecc: bool = False,
    nsym: int = 16,
    reports: dict[str, dict] | None = None,
    intended_use: str | None = None,
) -> dict:
    """Fill an empty `folder` with the bundle of `model_path`; return the manifest."""
    from qtool.deploy.model_card import render_model_card

    model = load_model(model_path)
    files = model_files(model_path)
    for rel in files:
        src = safe_member(model_path.parent, rel) if rel != model_path.name else model_path
        dst = folder.joinpath(*PurePosixPath(rel).parts)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    records = initializer_records(folder, model_path.name)
    meta = qtool_metadata(model)
    manifest: dict = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {"file": model_path.name, "data_files": files[1:]},
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
        "dataset": meta.get("dataset"),
        "model_name": meta.get("model"),
        "quantization": meta.get("quantization"),
        "metadata": {p.key: p.value for p in model.metadata_props},
        "reports": reports or {},
        "versions": versions(),
        "cpu": cpu_info(),
        "ecc": None,
    }
    if reports:
        (folder / "reports").mkdir()
        for name, payload in reports.items():
            (folder / "reports" / name).write_text(json.dumps(payload, indent=2) + "\n")
    if ecc:
        params = EccParams(nsym)
        parity_parts, layout, offset = [], [], 0
        for rel in files:
            data = folder.joinpath(*PurePosixPath(rel).parts).read_bytes()
            parity = encode_parity(data, params)
            layout.append(
                {
                    "file": rel,
                    "bytes": len(data),
                    "parity_offset": offset,
                    "parity_bytes": len(parity),
                }
            )
            parity_parts.append(parity)
            offset += len(parity)
        (folder / ECC_FILE).write_bytes(b"".join(parity_parts))
        covered = sum(item["bytes"] for item in layout)
        manifest["ecc"] = {
            "file": ECC_FILE,
            "scheme": "reed-solomon GF(2^8), prim 0x11d, generator 2 (reedsolo)",
            "nsym": nsym,
            "chunk_bytes": params.chunk,
            "correctable_bytes_per_chunk": params.correctable,
            "covers": layout,
            "overhead": offset / covered if covered else 0.0,
        }
    (folder / CARD).write_text(render_model_card(manifest, intended_use))
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            rel = path.relative_to(folder).as_posix()
            manifest["files"][rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    (folder / MANIFEST).write_text(json.dumps(to_jsonable(manifest), indent=2) + "\n")
    return manifest


def package(
    model_path: Path,
    out: Path,
    *,
    fmt: str = "dir",
    ecc: bool = False,
    nsym: int = 16,
    report_paths: list[Path] | None = None,
    intended_use: str | None = None,
    force: bool = False,
) -> PackageResult:
    """Write the bundle of `model_path` to `out` (a folder, or an archive), atomically."""
    start = time.perf_counter()
    model_path = Path(model_path)
    out = Path(out)
    if fmt not in ("dir", "tar.gz", "zip"):
        raise QtoolError(f"unknown bundle format {fmt!r}: use dir, tar.gz or zip")
    if not 2 <= nsym <= 128 or nsym % 2:
        raise QtoolError(f"--ecc-nsym must be an even number from 2 to 128, got {nsym}")
    if out.exists() and not force:
        raise QtoolError(f"output {out} already exists: choose another path or pass --force")
    if not out.parent.exists():
        raise QtoolError(f"output folder {out.parent} does not exist: create it first")
    if model_path.exists() and out.exists() and out.resolve() in model_path.resolve().parents:
        raise QtoolError(f"{out} contains the input model; choose another output")
    reports = read_reports(list(report_paths or []))
    with staging_dir(out) as staging:
        manifest = build_bundle(
            model_path, staging, ecc=ecc, nsym=nsym, reports=reports, intended_use=intended_use
        )
        manifest_sha = sha256_file(staging / MANIFEST)
        if fmt == "dir":
            replace_dir(staging, out)
        else:
            _write_archive(staging, out, fmt)
    weights = sum(r["length"] for r in manifest["initializers"])
    return PackageResult(
        out=out,
        files=manifest["files"],
        initializers=len(manifest["initializers"]),
        weight_bytes=weights,
        ecc=manifest["ecc"],
        manifest_sha256=manifest_sha,
        seconds=time.perf_counter() - start,
    )


def _write_archive(staging: Path, out: Path, fmt: str) -> None:
    root = out.name.removesuffix(".tar.gz").removesuffix(".tgz").removesuffix(".zip")
    with atomic_path(out) as tmp:
        if fmt == "tar.gz":
            with tarfile.open(tmp, "w:gz") as tar:
                for path in sorted(staging.rglob("*")):
                    if path.is_file():
                        tar.add(path, arcname=f"{root}/{path.relative_to(staging).as_posix()}")
        else:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(staging.rglob("*")):
                    if path.is_file():
                        zf.write(path, f"{root}/{path.relative_to(staging).as_posix()}")


# --- opening bundles -------------------------------------------------------------------------


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES)


MAX_ARCHIVE_BYTES = 64 * 2**30


def extract_archive(archive: Path, dest: Path) -> Path:
    """Extract only plain files and folders whose paths stay inside `dest`; return the root."""
    members: list[tuple[str, object]] = []
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                total = 0
                for info in zf.infolist():
                    _check_archive_name(info.filename, archive)
                    mode = (info.external_attr >> 16) & 0o170000
                    if mode and mode not in (0o100000, 0o040000):
                        raise QtoolError(f"{archive}: member {info.filename!r} is not a plain file")
                    total += info.file_size
                    if total > MAX_ARCHIVE_BYTES:
                        raise QtoolError(f"{archive} unpacks to over 64 GiB; refusing it")
                    members.append((info.filename, info))
                for name, info in members:
                    target = dest / name
                    if name.endswith("/"):
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        else:
            with tarfile.open(archive, "r:*") as tar:
                total = 0
                for info in tar.getmembers():
                    _check_archive_name(info.name, archive)
                    if not (info.isfile() or info.isdir()):
                        raise QtoolError(
                            f"{archive}: member {info.name!r} is a link or device; "
                            "bundles hold plain files only"
                        )
                    total += info.size
                    if total > MAX_ARCHIVE_BYTES:
                        raise QtoolError(f"{archive} unpacks to over 64 GiB; refusing it")
                    members.append((info.name, info))
                for name, info in members:
                    target = dest / name
                    if info.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(info)
                    with src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise QtoolError(f"{archive} is not a readable bundle archive ({exc})") from exc
    manifests = [p for p in dest.rglob(MANIFEST) if p.is_file()]
    if len(manifests) != 1:
        raise QtoolError(f"{archive} holds {len(manifests)} manifest.json files; expected one")
    return manifests[0].parent


def _check_archive_name(name: str, archive: Path) -> None:
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or "\\" in name or name.startswith("/"):
        raise QtoolError(
            f"{archive}: member {name!r} is absolute or climbs out of the archive; refusing it"
        )


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise QtoolError(f"{folder} is not a bundle folder or archive (.tar.gz/.zip)")
    if not path.is_file():
        raise QtoolError(f"{folder} has no manifest.json: is it a bundle made by qtool package?")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise QtoolError(f"{path} is not valid JSON ({exc}); the bundle is damaged") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise QtoolError(f"{path} is not a qtool bundle manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise QtoolError(
            f"{path} has format version {manifest['format_version']}; upgrade qtool to read it"
        )
    for rel in list(manifest.get("files", {})) + [manifest.get("model", {}).get("file", "")]:
        safe_member(folder, rel)
    for rel in manifest["model"].get("data_files", []):
        safe_member(folder, rel)
    for record in manifest.get("initializers", []):
        safe_member(folder, record["file"])
    if manifest.get("ecc"):
        safe_member(folder, manifest["ecc"]["file"])
    return manifest
