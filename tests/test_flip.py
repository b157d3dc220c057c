"""Bit flips in stored initializers: exact bytes, roles, positions, replay and undo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from flip_models import (
    THIRD_PARTY_CONV,
    THIRD_PARTY_SQUEEZENET,
    digits_cnn,
    digits_mlp,
    external,
    quantized,
    typed_fields,
    with_subgraph,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from qtool.cli import main
from qtool.faults import FlipSettings, inject
from qtool.faults.words import bit_positions
from qtool.modelfile.load import sha256_file
from qtool.modelfile.locate import locate_initializers
from qtool.modelfile.rewrite import to_flippable

ROLE = {"weights": "weight", "biases": "bias", "qparams": "qparam"}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("flipmodels")
    mlp = digits_mlp(d / "mlp.onnx", hidden=16)
    cnn = digits_cnn(d / "cnn.onnx", channels=4)
    third = d / "third_party_conv.onnx"
    shutil.copyfile(THIRD_PARTY_CONV, third)
    return {
        "mlp": mlp,
        "cnn": cnn,
        "qdq": quantized(cnn, d / "cnn.qdq.onnx", "qdq", per_channel=True),
        "qop": quantized(mlp, d / "mlp.qop.onnx", "qop"),
        "qop_cnn": quantized(cnn, d / "cnn.qop.onnx", "qop"),
        "typed": typed_fields(d / "typed.onnx"),
        "sub": with_subgraph(d / "sub.onnx"),
        "ext": external(mlp, d / "ext"),
        "third": third,
    }


def _all_bytes(path: Path) -> dict[str | None, bytes]:
    """The model file and its external-data files."""
    data = path.read_bytes()
    out: dict[str | None, bytes] = {None: data}
    for loc in locate_initializers(data):
        if loc.file is not None:
            out[loc.file] = (path.parent / loc.file).read_bytes()
    return out


def _diff_bits(a: bytes, b: bytes) -> list[tuple[int, int]]:
    """(byte offset, bit) of every differing bit, like `cmp -l` but per bit."""
    assert len(a) == len(b)
    x = np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)
    out = []
    for off in np.flatnonzero(x):
        for bit in range(8):
            if x[off] >> bit & 1:
                out.append((int(off), bit))
    return out


# --- the locator -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "qdq", "qop", "typed", "sub", "ext", "third"])
def test_locator_offsets_match_numpy_helper(models, name):
    path = models[name]
    files = _all_bytes(path)
    data, _ = to_flippable(files[None])
    locs = {(loc.graph, loc.name): loc for loc in locate_initializers(data)}
    model = onnx.load(str(path))
    seen = 0

    def check(graph: onnx.GraphProto, gpath: str) -> None:
        nonlocal seen
        for t in graph.initializer:
            expected = numpy_helper.to_array(t, base_dir=str(path.parent))
            loc = locs[(gpath, t.name)]
            assert loc.dims == tuple(t.dims) and loc.data_type == t.data_type
            buf = files[loc.file] if loc.file else data
            raw = buf[loc.offset : loc.offset + loc.length]
            got = np.frombuffer(raw, dtype=expected.dtype.newbyteorder("<")).reshape(t.dims)
            np.testing.assert_array_equal(got, expected)
            seen += 1
        for i, node in enumerate(graph.node):
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    check(attr.g, f"{gpath}/{node.name or f'{node.op_type}_{i}'}/{attr.name}")

    check(model.graph, "main")
    assert seen == len(locs) > 0


def test_locator_on_third_party_zoo_model():
    """light_squeezenet (onnx-caffe2 export shipped with onnx): every tensor agrees."""
    data = THIRD_PARTY_SQUEEZENET.read_bytes()
    locs = locate_initializers(data)
    model = onnx.load(str(THIRD_PARTY_SQUEEZENET))
    assert len(locs) == len(model.graph.initializer)
    for loc, t in zip(locs, model.graph.initializer, strict=True):
        expected = numpy_helper.to_array(t)
        got = np.frombuffer(data[loc.offset : loc.offset + loc.length], expected.dtype)
        np.testing.assert_array_equal(got, expected.ravel())


def test_typed_fields_are_located_and_varint_converted(models):
    data = models["typed"].read_bytes()
    enc = {loc.name: loc.encoding for loc in locate_initializers(data)}
    assert enc["w_float"] == "float_data" and enc["w_double"] == "double_data"
    assert enc["w_int8"] == "int32_data"
    new, converted = to_flippable(data)
    assert converted == ["w_int8", "q_zero"]
    after = {loc.name: loc for loc in locate_initializers(new)}
    assert after["w_int8"].encoding == "raw_data" and after["w_float"].encoding == "float_data"
    old_model, new_model = onnx.load_from_string(data), onnx.load_from_string(new)
    for a, b in zip(old_model.graph.initializer, new_model.graph.initializer, strict=True):
        x, y = numpy_helper.to_array(a), numpy_helper.to_array(b)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    same, none = to_flippable(models["mlp"].read_bytes())
    assert none == [] and same == models["mlp"].read_bytes()


# --- bit positions ---------------------------------------------------------------------------


def test_named_positions_per_type():
    def p(text: str) -> list[str | int]:
        return [int(t) if t.isdigit() else t for t in text.split(",")]

    assert bit_positions(1, p("sign")) == (31,)
    assert bit_positions(1, p("exponent")) == tuple(range(23, 31))
    assert bit_positions(1, p("exponent-msb")) == (30,)
    assert bit_positions(1, p("mantissa")) == tuple(range(23))
    assert bit_positions(10, p("exponent")) == tuple(range(10, 15))
    assert bit_positions(16, p("exponent-msb,sign")) == (14, 15)
    assert bit_positions(11, p("exponent-msb")) == (62,)
    assert bit_positions(3, p("msb")) == (7,) == bit_positions(3, p("sign"))
    assert bit_positions(2, p("sign")) == ()  # uint8 has no sign bit
    assert bit_positions(3, p("exponent")) == ()
    assert bit_positions(3, p("0,9")) == (0,)
    assert bit_positions(6, p("lsb,msb")) == (0, 31)
    assert len(bit_positions(7, p("any"))) == 64


# --- property: exactly N bits, inside eligible data, positions and roles respected -------------

CASES = [
    ("mlp", "weights"),
    ("mlp", "biases"),
    ("qdq", "weights"),
    ("qdq", "qparams"),
    ("qop", "weights"),
    ("qop_cnn", "biases"),
    ("typed", "weights"),
    ("sub", "weights"),
    ("ext", "all"),
    ("third", "weights"),
]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    case=st.sampled_from(CASES),
    bits=st.integers(0, 40),
    seed=st.integers(0, 2**32 - 1),
    positions=st.sampled_from(["any", "msb", "sign", "exponent", "mantissa", "lsb", "0,3,30"]),
    fault=st.sampled_from(["flip", "set", "reset"]),
)
def test_exactly_n_bits_inside_eligible_data(models, case, bits, seed, positions, fault):
    name, targets = case
    path = models[name]
    before = _all_bytes(path)
    try:
        settings = FlipSettings(
            bits=bits,
            seed=seed,
            targets=(targets,),
            positions=tuple(int(t) if t.isdigit() else t for t in positions.split(",")),
            fault=fault,
        )
        inj = inject(path, settings)
    except Exception as exc:  # a selection with too few bits is refused, never half-done
        assert "eligible" in str(exc)
        return
    after = inj.files.buffers()
    # the reference is the source with (only) the selected varint tensors converted
    converted = {(t["graph"], t["tensor"]) for t in inj.manifest["converted_originals"]}
    reference = dict(before)
    reference[None] = to_flippable(before[None], only=converted)[0] if converted else before[None]
    assert set(after) == set(reference)
    flipped = []
    for key, ref in reference.items():
        flipped += [(key, off, bit) for off, bit in _diff_bits(ref, bytes(after[key]))]
    assert len(flipped) == bits == len(inj.manifest["flips"])
    for key, off, bit in flipped:
        hits = [
            t
            for t in inj.targets
            if t.loc.file == key and t.loc.offset <= off < t.loc.offset + t.loc.length
        ]
        assert len(hits) == 1, "flipped byte outside every eligible tensor's data"
        t = hits[0]
        assert (off - t.loc.offset) % t.word * 8 + bit in t.positions
        if targets != "all":
            assert t.role == ROLE[targets]
        old = reference[key][off] >> bit & 1
        assert fault == "flip" or old == (0 if fault == "set" else 1)
    assert inj.manifest["source_sha256"] == __import__("hashlib").sha256(before[None]).hexdigest()


def test_bits_are_size_weighted_across_tensors(models):
    """Over many draws, each tensor's share of flips follows its share of eligible bits."""
    inj = inject(models["mlp"], FlipSettings(bits=2000, seed=3))
    counts: dict[str, int] = {}
    for e in inj.manifest["flips"]:
        counts[e["tensor"]] = counts.get(e["tensor"], 0) + 1
    total = inj.manifest["eligible_bits"]
    for t in inj.manifest["eligible_tensors"]:
        expected = 2000 * t["bits"] / total
        assert abs(counts.get(t["tensor"], 0) - expected) < 5 * np.sqrt(expected) + 1
    assert len({(e["tensor"], e["word"], e["bit"]) for e in inj.manifest["flips"]}) == 2000


def test_same_seed_same_flips_other_seed_other_flips(models):
    a = inject(models["qdq"], FlipSettings(bits=10, seed=7)).manifest["flips"]
    b = inject(models["qdq"], FlipSettings(bits=10, seed=7)).manifest["flips"]
    c = inject(models["qdq"], FlipSettings(bits=10, seed=8)).manifest["flips"]
    assert a == b and a != c


def test_subgraph_and_outer_scope_weights(models):
    inj = inject(models["sub"], FlipSettings(bits=0))
    graphs = {(t["tensor"], t["graph"]) for t in inj.manifest["eligible_tensors"]}
    assert graphs == {("w_then", "main/branch/then_branch"), ("w_outer", "main")}


def test_qoperator_roles(models):
    inj = inject(models["qop_cnn"], FlipSettings(bits=0, targets=("all",)))
    roles = {t["tensor"]: t["role"] for t in inj.manifest["eligible_tensors"]}
    weights = {n for n, r in roles.items() if r == "weight"}
    assert weights == {"conv.weight_quantized", "fc.weight_quantized"}
    assert {r for n, r in roles.items() if "bias" in n} == {"bias"}
    assert {r for n, r in roles.items() if "scale" in n or "zero_point" in n} == {"qparam"}


# --- CLI: outputs, replay, undo --------------------------------------------------------------


def _run(*args: str):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


@pytest.mark.parametrize("name", ["qdq", "qop", "typed", "ext", "third"])
def test_cli_flip_apply_undo_byte_identical(models, tmp_path, name):
    src = models[name]
    shas = {k: sha256_file(src.parent / k) if k else sha256_file(src) for k in _all_bytes(src)}
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out, manifest = out_dir / "flipped.onnx", tmp_path / "flips.json"
    r = _run("flip", src, "--bits", 7, "--seed", 5, "--out", out, "--manifest", manifest)
    assert r.exit_code == 0, r.output
    log = json.loads(manifest.read_text())
    assert len(log["flips"]) == 7 and log["seed"] == 5
    assert log["flipped_sha256"] == sha256_file(out)
    for e in log["flips"]:
        assert {"tensor", "role", "graph", "flat_index", "coords", "bit", "byte_offset"} <= set(e)
        assert {"old_value", "new_value", "old_byte", "new_byte", "file"} <= set(e)
    if name == "typed":
        assert "w_int8" in log["converted_to_raw_data"] or log["converted_to_raw_data"] == []
    # the flipped model still loads in ONNX Runtime
    ort.InferenceSession(str(out))
    # replay on the source gives the same bytes; undo on the flipped file gives the source
    again_dir, back_dir = tmp_path / "again", tmp_path / "back"
    again_dir.mkdir()
    back_dir.mkdir()
    r = _run("flip", src, "--apply", manifest, "--out", again_dir / "m.onnx")
    assert r.exit_code == 0, r.output
    assert _all_bytes(again_dir / "m.onnx") == _all_bytes(out)
    r = _run("flip", out, "--undo", manifest, "--out", back_dir / "m.onnx")
    assert r.exit_code == 0, r.output
    assert _all_bytes(back_dir / "m.onnx") == _all_bytes(src)
    for k, sha in shas.items():  # inputs untouched
        assert (sha256_file(src.parent / k) if k else sha256_file(src)) == sha


def test_typed_model_converts_only_selected_varint_tensor(models, tmp_path):
    out, manifest = tmp_path / "f.onnx", tmp_path / "flips.json"
    r = _run(
        "flip", models["typed"], "--bits", 3, "--layers", "int8", "--out", out,
        "--manifest", manifest,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    log = json.loads(manifest.read_text())
    assert log["converted_to_raw_data"] == ["w_int8"]
    assert {e["tensor"] for e in log["flips"]} == {"w_int8"}
    model = onnx.load(str(out))
    q_zero = next(t for t in model.graph.initializer if t.name == "q_zero")
    assert not q_zero.raw_data  # not selected, not converted


def test_apply_refuses_other_model(models, tmp_path):
    manifest = tmp_path / "flips.json"
    assert _run("flip", models["qdq"], "--bits", 2, "--manifest", manifest).exit_code == 0
    r = _run("flip", models["mlp"], "--apply", manifest, "--out", tmp_path / "x.onnx")
    assert r.exit_code == 2 and "sha256" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.onnx").exists()


def test_external_data_output_must_not_share_folder(models):
    src = models["ext"]
    r = _run("flip", src, "--bits", 1, "--out", src.parent / "other.onnx")
    assert r.exit_code == 2 and "another folder" in r.output


def test_existing_output_refused_without_force(models, tmp_path):
    out = tmp_path / "f.onnx"
    out.write_bytes(b"keep")
    r = _run("flip", models["mlp"], "--bits", 1, "--out", out)
    assert r.exit_code == 2 and "--force" in r.output and out.read_bytes() == b"keep"
    assert _run("flip", models["mlp"], "--bits", 1, "--out", out, "--force").exit_code == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bits", "100000"], "eligible bits"),
        (["--layers", "no_such_layer"], "matches none"),
        (["--layers", "("], "regular expression"),
        (["--positions", "middle"], "Invalid value for '--positions'"),
        (["--positions", "99"], "Invalid value for '--positions'"),
        (["--targets", "everything"], "Invalid value for '--targets'"),
        (["--bits", "x"], "Invalid value for '--bits'"),
        (["--bits", "1,2", "--trials", "2"], "needs --data"),
        (["--targets", "biases", "--positions", "exponent"], "no eligible bits"),
    ],
)
def test_bad_input_exit_2(models, args, message):
    sha = sha256_file(models["qdq"])
    r = _run("flip", models["qdq"], *args)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert sha256_file(models["qdq"]) == sha


def test_non_onnx_files_exit_2(tmp_path):
    for name, content in [("a.onnx", b"hello, this is not a model\n"), ("b.onnx", b""),
                          ("c.onnx", bytes(range(256)) * 4)]:  # fmt: skip
        (tmp_path / name).write_bytes(content)
        r = _run("flip", tmp_path / name, "--bits", 1)
        assert r.exit_code == 2, r.output
        assert "not an ONNX model" in r.output and "Traceback" not in r.output
    r = _run("flip", tmp_path / "missing.onnx")
    assert r.exit_code == 2 and "does not exist" in r.output


def test_flip_with_data_reports_sdc(models, tmp_path):
    r = _run("flip", models["qdq"], "--bits", 10, "--positions", "msb", "--data", "digits",
             "--json", tmp_path / "r.json")  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "r.json").read_text())
    ev = report["evaluation"]
    assert ev["samples"] == 360 and ev["clean_accuracy"] > 0.85
    assert 0 <= ev["sdc_rate"] <= 1 and ev["flipped_accuracy"] <= ev["clean_accuracy"] + 0.02
    assert "silent data corruption" in r.output
