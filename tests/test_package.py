"""package / verify / predict: corruption is caught, attributed, repaired; paths stay inside."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile

import numpy as np
import pytest
from builders import conv_model, digits_linear_weights, linear_image_model, save
from click.testing import CliRunner

from qtool.cli import main
from qtool.data.datasets import load_dataset
from qtool.modelfile.load import sha256_file
from qtool.modelfile.metadata import set_metadata
from qtool.modelfile.save import save_model


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def model(tmp_path):
    w, b = digits_linear_weights()
    proto = linear_image_model(w, b)
    set_metadata(proto, {"qtool.class_names": [str(i) for i in range(10)], "qtool.model": "lin"})
    return save(proto, tmp_path / "lin.onnx")


@pytest.fixture
def bundle(tmp_path, model):
    result = run("package", model, "--out", tmp_path / "bundle", "--ecc")
    assert result.exit_code == 0, result.output
    return tmp_path / "bundle"


def manifest_of(bundle):
    return json.loads((bundle / "manifest.json").read_text())


def flip_byte(path, offset, mask):
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def test_package_writes_manifest_card_and_leaves_input_alone(tmp_path, model, bundle):
    before = sha256_file(model)
    m = manifest_of(bundle)
    assert sorted(m["files"]) == ["MODEL_CARD.md", "lin.onnx", "model.ecc"]
    assert m["files"]["lin.onnx"]["sha256"] == before == sha256_file(model)
    names = {r["name"]: r for r in m["initializers"]}
    assert set(names) == {"w", "b"} and names["w"]["shape"] == [64, 10]
    assert names["w"]["length"] == 2560 and len(names["w"]["crc32"]) == 1
    raw = (bundle / "lin.onnx").read_bytes()
    w = np.frombuffer(raw[names["w"]["offset"] : names["w"]["offset"] + 2560], np.float32)
    assert np.array_equal(w.reshape(64, 10), digits_linear_weights()[0])
    assert m["class_names"][3] == "3" and m["versions"]["onnxruntime"]
    assert m["ecc"]["correctable_bytes_per_chunk"] == 8
    assert "Integrity" in (bundle / "MODEL_CARD.md").read_text()
    assert run("verify", bundle).exit_code == 0
    again = run("package", model, "--out", bundle)
    assert again.exit_code == 2 and "already exists" in again.output


def test_corruption_is_attributed_to_tensor_element_and_bit(bundle, tmp_path):
    rec = {r["name"]: r for r in manifest_of(bundle)["initializers"]}
    flip_byte(bundle / "lin.onnx", rec["w"]["offset"] + 4 * 123 + 2, 0x10)  # element 123, bit 20
    flip_byte(bundle / "lin.onnx", rec["b"]["offset"] + 4 * 7 + 3, 0x80)  # element 7, sign bit
    result = run("verify", bundle, "--json", tmp_path / "v.json")
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output
    report = json.loads((tmp_path / "v.json").read_text())
    located = {t["name"]: [(b["element"], b["bit"]) for b in t["bits"]] for t in report["tensors"]}
    assert located == {"w": [(123, 20)], "b": [(7, 31)]}
    assert report["intact"] is False and report["changed_files"] == ["lin.onnx"]


def test_repair_up_to_k_bytes_per_chunk_is_byte_identical(bundle):
    original = sha256_file(bundle / "lin.onnx")
    data = bytearray((bundle / "lin.onnx").read_bytes())
    rng = np.random.default_rng(1)
    k, chunk = 8, 239
    for start in range(0, len(data) - chunk, chunk):  # k corrupted bytes in every full chunk
        for offset in rng.choice(chunk, size=k, replace=False):
            data[start + offset] ^= int(rng.integers(1, 256))
    (bundle / "lin.onnx").write_bytes(bytes(data))
    assert run("verify", bundle).exit_code == 1
    result = run("verify", bundle, "--repair")
    assert result.exit_code == 0, result.output
    assert "REPAIRED" in result.output
    assert sha256_file(bundle / "lin.onnx") == original
    assert run("verify", bundle).exit_code == 0


def test_too_many_errors_are_reported_not_miscorrected(bundle):
    data = bytearray((bundle / "lin.onnx").read_bytes())
    for offset in range(300, 300 + 20):  # 20 bytes in one chunk: beyond nsym/2 = 8
        data[offset] ^= 0xFF
    (bundle / "lin.onnx").write_bytes(bytes(data))
    damaged = sha256_file(bundle / "lin.onnx")
    result = run("verify", bundle, "--repair")
    assert result.exit_code == 1 and "uncorrectable" in result.output
    assert sha256_file(bundle / "lin.onnx") == damaged


def test_damaged_parity_file_is_rebuilt(bundle):
    flip_byte(bundle / "model.ecc", 5, 0x01)
    assert run("verify", bundle).exit_code == 1
    assert run("verify", bundle, "--repair").exit_code == 0
    assert run("verify", bundle).exit_code == 0


def test_external_data_bundle(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    save_model(conv_model(), src / "conv.onnx", external=True)
    out = tmp_path / "bundle"
    assert run("package", src / "conv.onnx", "--out", out, "--ecc").exit_code == 0
    m = manifest_of(out)
    assert m["model"]["data_files"] == ["conv.onnx.data"]
    rec = {r["name"]: r for r in m["initializers"]}
    assert rec["wf"]["file"] == "conv.onnx.data"
    flip_byte(out / "conv.onnx.data", rec["wf"]["offset"] + 4 * 1000, 0x04)
    result = run("verify", out, "--json", tmp_path / "v.json")
    assert result.exit_code == 1
    tensors = json.loads((tmp_path / "v.json").read_text())["tensors"]
    assert [(t["name"], t["bits"][0]["element"], t["bits"][0]["bit"]) for t in tensors] == [
        ("wf", 1000, 2)
    ]


def test_predict_matches_eval_and_refuses_tampered_bundle(bundle, tmp_path):
    test = load_dataset("digits:test")
    images = (test.x[:20, 0] * 255).round().astype(np.uint8)
    np.savez(tmp_path / "s.npz", images=images)
    result = run("predict", bundle, tmp_path / "s.npz", "--json", tmp_path / "p.json")
    assert result.exit_code == 0, result.output
    preds = json.loads((tmp_path / "p.json").read_text())["predictions"]
    w, b = digits_linear_weights()
    expected = np.argmax((images.reshape(20, -1) / 255.0) @ w + b, axis=1)
    assert [p["label"] for p in preds] == expected.tolist()
    assert f"{tmp_path / 's.npz'}: read the rows of array 'images'" in " ".join(
        result.output.split()
    )
    rec = {r["name"]: r for r in manifest_of(bundle)["initializers"]}
    flip_byte(bundle / "lin.onnx", rec["w"]["offset"] + 1, 0x01)
    refused = run("predict", bundle, tmp_path / "s.npz")
    assert refused.exit_code == 1
    assert "failed verification" in refused.output and "Traceback" not in refused.output


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_archives_verify_and_detect(tmp_path, model, fmt):
    out = tmp_path / f"b.{fmt}"
    assert run("package", model, "--out", out, "--format", fmt).exit_code == 0
    assert run("verify", out).exit_code == 0
    assert run("verify", out, "--repair").exit_code == 2


def _tar_with(tmp_path, name, member: tarfile.TarInfo, payload=b""):
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(member, io.BytesIO(payload) if payload else None)
    return path


def test_path_traversal_is_refused(tmp_path, bundle):
    cases = []
    evil = tarfile.TarInfo("../evil.txt")
    evil.size = 4
    cases.append(_tar_with(tmp_path, "up.tar.gz", evil, b"evil"))
    link = tarfile.TarInfo("b/manifest.json")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    cases.append(_tar_with(tmp_path, "link.tar.gz", link))
    absolute = tarfile.TarInfo("/tmp/abs.txt")
    absolute.size = 1
    cases.append(_tar_with(tmp_path, "abs.tar.gz", absolute, b"x"))
    zpath = tmp_path / "up.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("../../evil.txt", "evil")
    cases.append(zpath)
    for archive in cases:
        result = run("verify", archive)
        assert result.exit_code == 2, (archive, result.output)
        assert "refusing" in result.output or "plain files only" in result.output
        assert "Traceback" not in result.output
    assert not (tmp_path.parent / "evil.txt").exists()

    m = manifest_of(bundle)
    for bad in ("../outside.onnx", "/etc/passwd"):
        m2 = dict(m, files={**m["files"], bad: {"sha256": "0" * 64, "bytes": 1}})
        (bundle / "manifest.json").write_text(json.dumps(m2))
        result = run("verify", bundle)
        assert result.exit_code == 2 and "refusing" in result.output, result.output
    (bundle / "manifest.json").write_text(json.dumps(m))
    outside = tmp_path / "outside.onnx"
    outside.write_bytes((bundle / "lin.onnx").read_bytes())
    os.remove(bundle / "lin.onnx")
    os.symlink(outside, bundle / "lin.onnx")
    result = run("verify", bundle)
    assert result.exit_code == 2 and "outside the bundle" in result.output


def test_bad_inputs_exit_2(tmp_path, model):
    for args, message in [
        (["verify", tmp_path / "nope"], "does not exist"),
        (["verify", model], "neither a bundle folder"),
        (["verify", tmp_path], "no manifest.json"),
        (["package", tmp_path / "x.onnx", "--out", tmp_path / "o"], "does not exist"),
        (["package", model, "--out", tmp_path / "o", "--report", model], "not JSON"),
    ]:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output


def test_thousand_single_bit_flips_are_detected_and_attributed(tmp_path):
    """Each flip made by the flip machinery is caught and named down to element and bit."""
    from flip_models import digits_cnn, quantized

    from qtool.deploy.verify import verify
    from qtool.faults import FlipSettings, inject
    from qtool.modelfile.rewrite import to_flippable

    int8 = quantized(digits_cnn(tmp_path / "cnn.onnx"), tmp_path / "cnn.int8.onnx")
    # ORT stores some int32 tensors as varints; flip converts them to raw_data first (a
    # layout change, reported in its manifest), so package the already-converted file.
    src = tmp_path / "cnn.int8.raw.onnx"
    src.write_bytes(to_flippable(int8.read_bytes())[0])
    bundle = tmp_path / "bundle"
    assert run("package", src, "--out", bundle, "--ecc").exit_code == 0
    model_file = bundle / src.name
    original = model_file.read_bytes()
    misses = []
    for seed in range(1000):
        flip = inject(model_file, FlipSettings(bits=1, seed=seed, targets=("all",)))
        entry = flip.manifest["flips"][0]
        model_file.write_bytes(bytes(flip.files.main))
        result = verify(bundle)
        located = [(t.name, b.element, b.bit) for t in result.tensors for b in t.bits]
        if result.intact or located != [(entry["tensor"], entry["word"], entry["bit"])]:
            misses.append((seed, entry["tensor"], located))
        model_file.write_bytes(original)
    assert misses == []


def test_inserted_bytes_are_reported_as_a_length_change(bundle):
    data = (bundle / "lin.onnx").read_bytes()
    (bundle / "lin.onnx").write_bytes(data[:100] + b"\0" + data[100:])
    result = run("verify", bundle, "--repair")
    assert result.exit_code == 1 and "length changed" in result.output


def test_model_card_carries_the_bundled_reports(tmp_path, model):
    reports = {
        "e.json": ["eval", model, "--data", "digits"],
        "b.json": [
            "bench",
            model,
            model,
            "--runs",
            "20",
            "--energy",
            "estimate",
            "--energy-window",
            "0.2",
        ],
        "c.json": ["flip", model, "--bits", "1,2", "--trials", "2", "--data", "digits"],
    }
    for name, args in reports.items():
        result = run(*args, "--json", tmp_path / name)
        assert result.exit_code == 0, result.output
    args = [a for name in reports for a in ("--report", tmp_path / name)]
    assert run("package", model, "--out", tmp_path / "b", *args).exit_code == 0
    card = (tmp_path / "b" / "MODEL_CARD.md").read_text()
    accuracy = json.loads((tmp_path / "e.json").read_text())["accuracy"]
    assert f"{100 * accuracy:.2f} % on 360 samples of digits" in card
    assert "mJ (estimated)" in card and "ESTIMATED" in card
    assert "| lin.onnx | 93.89 % | " in card and "| 2 bits |" in card
    assert sorted(p.name for p in (tmp_path / "b" / "reports").iterdir()) == sorted(reports)


def test_model_card_reads_quantize_flip_and_search_reports(tmp_path, model):
    """The issue's bundle: an INT8 model with its quantize report is not "unevaluated"."""
    int8 = tmp_path / "lin.int8.onnx"
    runs = {
        "q.json": ["quantize", model, "--calib", "digits", "--out", int8],
        "f.json": ["flip", int8, "--bits", "3", "--data", "digits", "--out", tmp_path / "f.onnx",
                   "--manifest", tmp_path / "fm.json"],
        "s.json": ["flip", int8, "--search", "progressive", "--bits", "2", "--data", "digits",
                   "--out", tmp_path / "s.onnx", "--manifest", tmp_path / "sm.json",
                   "--attack-samples", "32"],
    }  # fmt: skip
    for name, args in runs.items():
        result = run(*args, "--json", tmp_path / name)
        assert result.exit_code == 0, result.output
    (tmp_path / "notes.json").write_text('{"reviewer": "dr. x"}')
    args = [a for name in [*runs, "notes.json"] for a in ("--report", tmp_path / name)]
    assert run("package", int8, "--out", tmp_path / "b", *args).exit_code == 0
    card = (tmp_path / "b" / "MODEL_CARD.md").read_text()
    q = json.loads((tmp_path / "q.json").read_text())
    assert "No evaluation report bundled" not in card
    assert (
        f"- FP32 {100 * q['test']['fp32']:.2f} % -> INT8 {100 * q['test']['int8']:.2f} %"
    ) in card
    assert "## Quantisation" in card and f"(x{q['size_ratio']:.3f})" in card
    assert "- Quantisation: static int8 weights (per channel), uint8 activations, qdq" in card
    assert "- Data set: not recorded in the model; the reports measure on digits" in card
    assert "- Classes: 0, 1, 2" in card
    assert "random bit flips (weights, seed" in card and "Bit-Flip Attack" in card
    assert "`reports/notes.json`: not a report kind qtool summarises" in card
