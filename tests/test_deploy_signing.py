"""deploy.signing: key files, the signature record, and every way a signed bundle is refused
under a trust list (unsigned, bad signature, untrusted key, manifest changed after signing,
the consistent replacement of model and manifest), checked with real Ed25519 keys."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import stat

import pytest
from builders import digits_linear_weights, linear_image_model, save

from qtool.deploy.bundle import package
from qtool.deploy.signing import (
    BAD_SIGNATURE,
    MANIFEST_CHANGED,
    UNSIGNED,
    UNTRUSTED_KEY,
    UNVERIFIED,
    VERIFIED,
    SignatureRefused,
    check_signature,
    generate_keypair,
    load_private_key,
    load_trust,
)
from qtool.deploy.verify import verify
from qtool.errors import QtoolError

pytest.importorskip("cryptography")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keys")
    return {name: generate_keypair(tmp / name) for name in ("release", "next", "attacker")}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The deployed linear digits model and an attacker's replacement (other weights)."""
    tmp = tmp_path_factory.mktemp("models")
    w, b = digits_linear_weights()
    good = save(linear_image_model(w, b), tmp / "lin.onnx")
    (tmp / "evil").mkdir()
    evil = save(linear_image_model(-w, b), tmp / "evil" / "lin.onnx")
    return good, evil


@pytest.fixture
def signed(tmp_path, models, keys):
    out = tmp_path / "bundle"
    result = package(models[0], out, ecc=True, sign_key=keys["release"].private)
    assert result.signed_by == keys["release"].key_id
    return out


def test_keygen_writes_private_0600_and_public_pem(keys, tmp_path):
    pair = keys["release"]
    assert stat.S_IMODE(pair.private.stat().st_mode) == 0o600
    assert pair.public.name == "release.pub"
    assert pair.public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    trust = load_trust([pair.public])
    assert list(trust) == [pair.key_id] and len(pair.key_id) == 64
    with pytest.raises(QtoolError, match="already exists"):
        generate_keypair(pair.private)


def test_key_files_are_checked(keys, tmp_path):
    with pytest.raises(QtoolError, match="is a private key") as exc:
        load_trust([keys["release"].private])
    assert exc.value.param == "trust"
    with pytest.raises(QtoolError, match="is a public key"):
        load_private_key(keys["release"].public)
    (tmp_path / "junk.pub").write_text("not a key")
    with pytest.raises(QtoolError, match="not a PEM public key"):
        load_trust([tmp_path / "junk.pub"])
    with pytest.raises(QtoolError, match="does not exist"):
        load_trust([tmp_path / "missing.pub"])
    with pytest.raises(QtoolError, match="trust list is empty"):
        load_trust([])


def test_signature_covers_the_manifest_which_lists_every_file(signed, keys):
    record = json.loads((signed / "manifest.sig").read_text())
    manifest_bytes = (signed / "manifest.json").read_bytes()
    assert record["algorithm"] == "ed25519" and record["key_id"] == keys["release"].key_id
    assert record["manifest_sha256"] == hashlib.sha256(manifest_bytes).hexdigest()
    assert len(base64.b64decode(record["signature"])) == 64
    listed = set(json.loads(manifest_bytes)["files"])
    on_disk = {p.relative_to(signed).as_posix() for p in signed.rglob("*") if p.is_file()}
    assert on_disk - listed == {"manifest.json", "manifest.sig"}
    assert {"lin.onnx", "model.ecc", "MODEL_CARD.md"} <= listed


def test_trusted_signature_verifies_and_rotation_accepts_either_key(signed, keys):
    only = load_trust([keys["release"].public])
    both = load_trust([keys["next"].public, keys["release"].public])
    for trust in (only, both):
        status = check_signature(signed, trust)
        assert status.status == VERIFIED and status.key_id == keys["release"].key_id
        assert verify(signed, trust=trust).intact
    assert check_signature(signed, None).status == UNVERIFIED


def refusal(bundle, keys, *names) -> SignatureRefused:
    with pytest.raises(SignatureRefused) as exc:
        verify(bundle, trust=load_trust([keys[n].public for n in names]))
    return exc.value


def test_unsigned_bundle_is_refused_under_trust(tmp_path, models, keys):
    package(models[0], tmp_path / "plain")
    assert verify(tmp_path / "plain").signature.status == UNSIGNED
    error = refusal(tmp_path / "plain", keys, "release")
    assert error.reason == UNSIGNED and "no manifest.sig" in str(error)
    assert str(error).count("\n") == 0


def test_signature_by_untrusted_key_is_refused(signed, keys):
    error = refusal(signed, keys, "next")
    assert error.reason == UNTRUSTED_KEY and keys["release"].key_id[:16] in str(error)


def test_damaged_signature_is_refused(signed, keys):
    record = json.loads((signed / "manifest.sig").read_text())
    sig = bytearray(base64.b64decode(record["signature"]))
    sig[5] ^= 0x01
    record["signature"] = base64.b64encode(bytes(sig)).decode()
    (signed / "manifest.sig").write_text(json.dumps(record))
    assert refusal(signed, keys, "release").reason == BAD_SIGNATURE
    (signed / "manifest.sig").write_text("{not json")
    assert refusal(signed, keys, "release").reason == BAD_SIGNATURE


def test_manifest_edited_after_signing_is_refused(signed, keys):
    manifest = json.loads((signed / "manifest.json").read_text())
    manifest["class_names"] = ["benign"] * 10
    (signed / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    error = refusal(signed, keys, "release")
    assert error.reason == MANIFEST_CHANGED and "that key" in str(error)


def replace_consistently(bundle, evil_model, tmp_path):
    """The attack checksums cannot stop: a new model and a manifest that matches it."""
    package(evil_model, tmp_path / "evil_bundle", ecc=True)
    for name in ("lin.onnx", "model.ecc", "MODEL_CARD.md", "manifest.json"):
        shutil.copyfile(tmp_path / "evil_bundle" / name, bundle / name)


def test_consistent_replacement_of_model_and_manifest(signed, models, keys, tmp_path):
    replace_consistently(signed, models[1], tmp_path)
    assert verify(signed).intact  # checksums alone accept it: that is the hole
    assert verify(signed).signature.status == UNVERIFIED  # ...and the output says so
    assert refusal(signed, keys, "release").reason == MANIFEST_CHANGED
    # the attacker re-signs with a key of their own: untrusted
    package(models[1], tmp_path / "resigned", ecc=True, sign_key=keys["attacker"].private)
    shutil.copyfile(tmp_path / "resigned" / "manifest.json", signed / "manifest.json")
    shutil.copyfile(tmp_path / "resigned" / "manifest.sig", signed / "manifest.sig")
    assert refusal(signed, keys, "release").reason == UNTRUSTED_KEY
    # ...or deletes the signature: unsigned
    (signed / "manifest.sig").unlink()
    assert refusal(signed, keys, "release").reason == UNSIGNED


def test_unlisted_file_fails_verification(signed, keys):
    (signed / "extra.onnx").write_bytes(b"dropped in later")
    result = verify(signed, trust=load_trust([keys["release"].public]))
    assert not result.intact and result.unlisted_files == ["extra.onnx"]


def test_signed_archive_verifies_under_trust(tmp_path, models, keys):
    out = tmp_path / "bundle.tar.gz"
    package(models[0], out, fmt="tar.gz", sign_key=keys["release"].private)
    result = verify(out, trust=load_trust([keys["release"].public]))
    assert result.intact and result.signature.status == VERIFIED
