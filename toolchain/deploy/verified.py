"""A bundle's model bytes, verified once and held: what `predict` and `serve` run.

The signature (with a trust list) and every file are checked; then the manifest and the
model file(s) are read once more into memory and each checked against the manifest's sha256,
so the bytes that run are the bytes that were verified, not a second read of a file that may
have changed in between. External-data tensors are inlined from the held bytes, so ONNX
Runtime never reads the disk either.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import onnx
from onnx import external_data_helper

from qtool.deploy.manifest import read_manifest, read_manifest_bytes, safe_member
from qtool.deploy.signing import SignatureStatus
from qtool.deploy.verify import verify
from qtool.errors import QtoolError, WorkFailed
from qtool.modelfile.load import parse_model
from qtool.modelfile.metadata import qtool_metadata
from qtool.modelfile.validate import check_model, check_text

MAX_INLINE_BYTES = 2**31 - 1  # protobuf's limit for one serialized model


@dataclass
class VerifiedModel:
    """Verified bytes of a bundle's model, with what the manifest says about them."""

    bundle: str
    manifest: dict
    manifest_bytes: bytes
    files: dict[str, bytes]  # model file and external-data files, bundle-relative
    signature: SignatureStatus | None
    metadata: dict  # qtool's metadata from the model

    @property
    def manifest_sha256(self) -> str:
        return hashlib.sha256(self.manifest_bytes).hexdigest()

    @property
    def model_file(self) -> str:
        return self.manifest["model"]["file"]

    @property
    def name(self) -> str:
        """The bundle's model name (metadata `qtool.model`), else the model file's stem."""
        named = self.manifest.get("model_name") or self.metadata.get("model")
        return str(named) if named else PurePosixPath(self.model_file).stem

    def changed_files(self) -> list[str]:
        """Held files whose bytes no longer match the manifest (memory corruption)."""
        return [
            rel
            for rel, data in self.files.items()
            if hashlib.sha256(data).hexdigest() != self.manifest["files"][rel]["sha256"]
        ]

    def session_bytes(self) -> bytes:
        """The model as one serialized ONNX file: external data inlined from held bytes."""
        main = self.files[self.model_file]
        if len(self.files) == 1:
            return main
        proto = onnx.load_model_from_string(main)
        for tensor in external_data_helper._get_all_tensors(proto):
            if not external_data_helper.uses_external_data(tensor):
                continue
            try:
                info = external_data_helper.ExternalDataInfo(tensor)
                data = self.files[PurePosixPath(info.location).as_posix()]
            except (ValueError, KeyError) as exc:
                raise QtoolError(
                    f"{self.bundle}: tensor {tensor.name!r} has external data the bundle does not "
                    f"hold or cannot locate ({exc})"
                ) from exc
            start = info.offset or 0
            end = len(data) if info.length is None else start + info.length
            if start < 0 or not start <= end <= len(data):
                raise QtoolError(
                    f"{self.bundle}: tensor {tensor.name!r} claims bytes {start}..{end} of "
                    f"{info.location}, which has {len(data)}"
                )
            tensor.raw_data = data[start:end]
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
        serialized = proto.SerializeToString()
        if len(serialized) > MAX_INLINE_BYTES:
            raise QtoolError(f"the model of {self.bundle} is over 2 GiB with its external data")
        return serialized


def load_verified(folder: Path, trust: dict | None = None, label: str | None = None):
    """Verify the bundle folder (signature first, with `trust`), then hold its model bytes.

    Raises SignatureRefused or WorkFailed (exit 1) for a bundle that does not verify.
    """
    folder = Path(folder)
    label = label or str(folder)
    result = verify(folder, trust=trust)
    if not result.intact:
        found = [f"tensor {t.name} changed" for t in result.tensors] or [
            f"{f} changed" for f in result.changed_files
        ]
        found += [f"{f} missing" for f in result.missing_files]
        found += [f"{f} not in the manifest" for f in result.unlisted_files]
        raise WorkFailed(
            f"bundle {label} failed verification ({', '.join(found[:5])}); refusing it. "
            "Verify it for the details, and repair it if it was packaged with ECC"
        )
    data = read_manifest_bytes(folder) or b""
    if hashlib.sha256(data).hexdigest() != result.manifest_sha256:
        raise WorkFailed(f"manifest.json of {label} changed while it was verified; refusing it")
    manifest = read_manifest(folder, data)
    files = {}
    for rel in [manifest["model"]["file"], *manifest["model"].get("data_files", [])]:
        files[rel] = safe_member(folder, rel).read_bytes()
        if hashlib.sha256(files[rel]).hexdigest() != manifest["files"][rel]["sha256"]:
            raise WorkFailed(f"{rel} in {label} changed while it was verified; refusing it")
    # What the manifest vouches for must be a model too: a forged bundle can hash junk.
    where = f"{label}: {manifest['model']['file']}"
    proto = parse_model(files[manifest["model"]["file"]], where)
    check_text(proto, where)
    verified = VerifiedModel(label, manifest, data, files, result.signature, {})
    inline = verified.session_bytes()
    check_model(parse_model(inline, where), inline, where)
    verified.metadata = qtool_metadata(proto, where)
    return verified
