"""Ed25519 signatures over a bundle's manifest: who made this bundle, and may the server run it.

Checksums in the manifest catch accidents; they cannot catch an adversary who replaces the
model and writes a matching manifest. A signature can: `manifest.sig` holds an Ed25519
signature (via the `cryptography` package; no hand-written crypto) over the exact bytes of
`manifest.json`, and the manifest lists the sha256 of every other file (model, external data,
ECC parity, reports, model card), so the signature covers them all.

Files:
  KEY       private key, PEM PKCS#8, written 0600. Keep it off the server.
  KEY.pub   public key, PEM SubjectPublicKeyInfo (`openssl pkey -pubin -in KEY.pub -text`).
  manifest.sig  JSON: format, algorithm "ed25519", key_id (sha256 hex of the 32-byte raw
            public key), the manifest's sha256 when signed, and the signature in base64.

A server holds a trust list of public keys (several, for rotation). With one, a bundle is
accepted only when its signature verifies under a listed key; every other case is refused
with one line saying which (`SignatureRefused`, exit 1). Without a trust list the signer is
reported as unverified and nothing is refused, as before signatures existed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from qtool.deploy.manifest import MANIFEST, SIGNATURE
from qtool.errors import MissingExtra, QtoolError, WorkFailed
from qtool.outputs import atomic_path, atomic_write, check_output_path
from qtool.readable import is_regular, regular_file

ALGORITHM = "ed25519"
SIGNATURE_FORMAT = "qtool-signature"
SIGNATURE_VERSION = 1
MAX_KEY_FILE_BYTES = 64 * 1024  # a PEM key is a few hundred bytes; refuse anything huge

# Outcomes of a signature check; the refusals are raised as SignatureRefused(reason).
VERIFIED = "verified"  # signed by a key in the trust list
UNVERIFIED = "unverified"  # signed, but no trust list was given to check it against
UNSIGNED = "unsigned"
UNTRUSTED_KEY = "untrusted key"
BAD_SIGNATURE = "bad signature"
MANIFEST_CHANGED = "manifest changed after signing"


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise MissingExtra("cryptography", "sign", "signing and checking signatures") from exc
    return serialization, ed25519, InvalidSignature


class SignatureRefused(WorkFailed):
    """A trust list was given and the bundle's signature does not satisfy it (exit 1)."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"signature check failed ({reason}): {message}")
        self.reason = reason


@dataclass(frozen=True)
class SignatureStatus:
    """What the signature check found; `status` is VERIFIED, UNVERIFIED or UNSIGNED."""

    status: str
    key_id: str | None = None
    key_file: str | None = None  # the trusted public key file that verified it

    @property
    def summary(self) -> str:
        """One phrase for human output."""
        if self.status == VERIFIED:
            return f"signed by trusted key {short(self.key_id)} ({self.key_file})"
        if self.status == UNVERIFIED:
            return f"signer unverified: signed by key {short(self.key_id)}, no trust list given"
        return "signer unverified: the bundle is unsigned"


def short(key_id: str | None) -> str:
    return f"{key_id[:16]}…" if key_id else "?"


def key_id_of(public_key) -> str:
    """sha256 (hex) of the raw 32-byte Ed25519 public key: the name of a key everywhere."""
    serialization, _, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


# --- keys -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path
    key_id: str


def public_path(private: Path) -> Path:
    return private.with_name(private.name + ".pub")


def generate_keypair(out: Path, force: bool = False) -> KeyPair:
    """Write a new Ed25519 private key to `out` (mode 0600) and its public key to `out`.pub."""
    serialization, ed25519, _ = _crypto()
    out = Path(out)
    pub = public_path(out)
    check_output_path(out, force, param="out")
    check_output_path(pub, force, param="out")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with atomic_path(out) as tmp:  # mkstemp makes it 0600; say so explicitly anyway
        os.chmod(tmp, 0o600)
        tmp.write_bytes(pem)
    public = key.public_key()
    public_pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with atomic_path(pub) as tmp:
        os.chmod(tmp, 0o644)
        tmp.write_bytes(public_pem)
    return KeyPair(out, pub, key_id_of(public))


def _read_key_file(path: Path, what: str, param: str) -> bytes:
    regular_file(path, what, param=param)  # a FIFO or device is refused, not read
    if path.stat().st_size > MAX_KEY_FILE_BYTES:
        raise QtoolError(f"{path} is over 64 KiB; it is not a {what} file", param=param)
    return path.read_bytes()


def load_private_key(path: Path, param: str = "sign_key"):
    """An Ed25519 private key from a PEM file written by `generate_keypair` (unencrypted)."""
    serialization, ed25519, _ = _crypto()
    data = _read_key_file(Path(path), "private key", param)
    if b"PUBLIC KEY" in data:
        raise QtoolError(
            f"{path} is a public key; signing needs the private key (the file without .pub)",
            param=param,
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise QtoolError(
            f"{path} is encrypted; qtool reads unencrypted PEM keys from qtool keygen",
            param=param,
        ) from exc
    except ValueError as exc:
        raise QtoolError(
            f"{path} is not a PEM private key; make one with qtool keygen", param=param
        ) from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise QtoolError(f"{path} is not an Ed25519 key; make one with qtool keygen", param=param)
    return key


def load_trust(paths: list[Path], param: str = "trust") -> dict[str, tuple[object, str]]:
    """The trust list: key id -> (public key, file it came from), from PEM .pub files."""
    serialization, ed25519, _ = _crypto()
    if not paths:
        raise QtoolError("the trust list is empty: give one or more public key files", param=param)
    trust: dict[str, tuple[object, str]] = {}
    for path in map(Path, paths):
        data = _read_key_file(path, "public key", param)
        if b"PRIVATE KEY" in data:
            raise QtoolError(
                f"{path} is a private key; a server trusts public keys only (give {path}.pub, "
                "and keep the private key off the server)",
                param=param,
            )
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise QtoolError(
                f"{path} is not a PEM public key; give the .pub file qtool keygen wrote",
                param=param,
            ) from exc
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise QtoolError(f"{path} is not an Ed25519 public key", param=param)
        trust[key_id_of(key)] = (key, str(path))
    return trust


# --- signing and checking ---------------------------------------------------------------------


def sign_manifest(folder: Path, private_key) -> dict:
    """Sign `folder`/manifest.json exactly as it is on disk; write manifest.sig; return it."""
    manifest = (Path(folder) / MANIFEST).read_bytes()
    record = {
        "format": SIGNATURE_FORMAT,
        "format_version": SIGNATURE_VERSION,
        "algorithm": ALGORITHM,
        "key_id": key_id_of(private_key.public_key()),
        "signed_file": MANIFEST,
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "signature": base64.b64encode(private_key.sign(manifest)).decode("ascii"),
    }
    atomic_write(Path(folder) / SIGNATURE, json.dumps(record, indent=2) + "\n")
    return record


def read_signature(folder: Path) -> dict | None:
    """The signature record of a bundle folder, None when unsigned. A malformed file is a bad
    signature (it came with the bundle, so it is refused as tampering, not as bad input)."""
    path = Path(folder) / SIGNATURE
    if path.is_symlink() or (path.exists() and not is_regular(path)):
        return {"malformed": f"{SIGNATURE} is a symlink or special file, not a plain file"}
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as fh:
            record = json.loads(fh.read(MAX_KEY_FILE_BYTES))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        record = None
    if not isinstance(record, dict) or record.get("format") != SIGNATURE_FORMAT:
        return {"malformed": f"{SIGNATURE} is not a qtool signature file"}
    if record.get("algorithm") != ALGORITHM:
        return {"malformed": f"{SIGNATURE} uses algorithm {record.get('algorithm')!r}, not ed25519"}
    return record


def check_signature(
    folder: Path, trust: dict | None, label: str | None = None, manifest: bytes | None = None
) -> SignatureStatus:
    """Check a bundle folder's signature over `manifest` (its manifest.json bytes, read here
    when not given). With `trust` (from `load_trust`), anything but a valid signature by a
    listed key raises SignatureRefused; without, report only."""
    folder = Path(folder)
    label = label or str(folder)
    record = read_signature(folder)
    if trust is None:
        if record is None:
            return SignatureStatus(UNSIGNED)
        return SignatureStatus(UNVERIFIED, key_id=record.get("key_id"))
    if record is None:
        raise SignatureRefused(
            UNSIGNED, f"{label} has no {SIGNATURE}; only bundles signed by a trusted key are run"
        )
    if "malformed" in record:
        raise SignatureRefused(BAD_SIGNATURE, f"{label}: {record['malformed']}")
    key_id = str(record.get("key_id", ""))
    if key_id not in trust:
        listed = ", ".join(short(k) for k in trust)
        raise SignatureRefused(
            UNTRUSTED_KEY,
            f"{label} is signed by key {short(key_id)}, which is not in the trust list ({listed})",
        )
    public_key, key_file = trust[key_id]
    if manifest is None:
        manifest = (folder / MANIFEST).read_bytes()
    _, _, invalid = _crypto()
    try:
        signature = base64.b64decode(str(record.get("signature", "")), validate=True)
        public_key.verify(signature, manifest)
    except (invalid, binascii.Error, ValueError) as exc:
        now = hashlib.sha256(manifest).hexdigest()
        if now != record.get("manifest_sha256"):
            raise SignatureRefused(
                MANIFEST_CHANGED,
                f"{MANIFEST} of {label} has sha256 {now[:16]}…, not the "
                f"{str(record.get('manifest_sha256'))[:16]}… that key {short(key_id)} signed",
            ) from exc
        raise SignatureRefused(
            BAD_SIGNATURE,
            f"the signature in {SIGNATURE} of {label} does not verify under key "
            f"{short(key_id)} (forged or damaged)",
        ) from exc
    return SignatureStatus(VERIFIED, key_id=key_id, key_file=key_file)
