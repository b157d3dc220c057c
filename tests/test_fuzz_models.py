"""Fuzz: mutated INT8 models through inspect, eval, package, flip and predict, in-process.

Hypothesis draws edits of the serialized models (raw bytes, and protobuf fields found with
ONNX's own descriptors: tests/mutants.py); the issue's reproducers run as fixed cases. Every
outcome is judged as benchmarks/fuzz.py judges it (tests/fuzzing.py): no internal error, no
exit 0 on a model onnx or ONNX Runtime cannot load, no input changed, one stderr line on
exit 2. A bounded, derandomised number of cases keeps this under a minute; the long run is
`python benchmarks/fuzz.py --cases 10000`.
"""

from __future__ import annotations

from pathlib import Path

import mutants
import pytest
from fuzzing import COMMANDS, Base, fuzz_settings, malformed, run_case, write_case
from hypothesis import given
from hypothesis import strategies as st

FUZZ = fuzz_settings(12)


@pytest.fixture(scope="module")
def bases(int8_models, tmp_path_factory) -> dict[str, Base]:
    folder = tmp_path_factory.mktemp("fuzz_bases")
    return {kind: Base.make(kind, path, folder) for kind, path in int8_models.items()}


def judge(base: Base, mutant: bytes, case: Path, extra: dict | None = None) -> dict:
    """Run every command on one mutant; assert the issue's counts are all zero."""
    write_case(case, base, mutant, extra)
    verdict = malformed(case / "in" / "m.onnx")
    codes = {}
    for command in COMMANDS:
        outcome = run_case(command, base, case, verdict)
        where = f"{command} on a {base.kind} mutant ({verdict or 'loads'}): {outcome.stderr}"
        assert not outcome.internal, where
        assert not outcome.accepted_malformed, where
        assert not outcome.inputs_changed, where
        assert outcome.one_line, where
        codes[command] = outcome.exit_code
    return codes


raw_edits = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 2**20), st.integers(0, 255)),
    st.tuples(st.just("flip"), st.integers(0, 2**20), st.integers(0, 7)),
    st.tuples(st.just("overwrite"), st.integers(0, 2**20), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("insert"), st.integers(0, 2**20), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 2**20), st.integers(1, 16)),
    st.tuples(st.just("truncate"), st.integers(0, 2**20), st.just(0)),
)
RAW = {
    "set": mutants.set_byte,
    "flip": mutants.flip_bit,
    "overwrite": mutants.overwrite,
    "insert": mutants.insert,
    "delete": mutants.delete,
    "truncate": lambda data, offset, _: mutants.truncate(data, offset),
}
field_values = st.one_of(
    st.sampled_from(mutants.INTERESTING_INTS),
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from(mutants.BAD_TEXTS),
    st.binary(max_size=48),
)


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
@FUZZ
@given(edits=st.lists(raw_edits, min_size=1, max_size=3))
def test_raw_byte_edits(bases, tmp_path_factory, kind, edits):
    base = bases[kind]
    data = base.model.read_bytes()
    for op, offset, value in edits:
        data = RAW[op](data, offset, value)
    judge(base, data, tmp_path_factory.mktemp("raw"))


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
@FUZZ
@given(choice=st.data())
def test_protobuf_field_edits(bases, tmp_path_factory, kind, choice):
    base = bases[kind]
    data = base.model.read_bytes()
    found = mutants.wire_fields(data)
    field = found[choice.draw(st.integers(0, len(found) - 1), label="field")]
    action = choice.draw(st.sampled_from(mutants.ACTIONS), label="action")
    value = choice.draw(field_values, label="value")
    if action in ("int", "wire") and isinstance(value, bytes):
        value = int.from_bytes(value[:8] or b"\0", "little")
    mutant = mutants.edit_field(data, field, action, value)
    judge(base, mutant, tmp_path_factory.mktemp("field"))


# The reproducers: which commands must refuse each (exit 2); the others may accept
# a model that loads (e.g. flip needs no metadata; inspect shows it as it is).
EVERY = set(COMMANDS)
READS_METADATA = {"eval", "package", "predict"}
MUST_REFUSE = {name: EVERY for name in mutants.REPRODUCERS} | {
    "normalization_as_int": READS_METADATA,
    "normalization_as_strings": READS_METADATA,
    "normalization_wrong_length": {"eval", "predict"},
    "normalization_zero_std": READS_METADATA,
    "class_names_as_int": READS_METADATA,
    "class_names_wrong_length": {"eval", "predict"},
    "input_shape_as_text": READS_METADATA,
    "extra_required_input": {"eval", "predict"},
}


@pytest.mark.parametrize("name", sorted(mutants.REPRODUCERS))
def test_reproducers(bases, tmp_path, name):
    kind = "mlp" if name.startswith("normalization") else "cnn"
    base = bases[kind]
    clean = base.model.read_bytes()
    extra = None
    if name in mutants.EXTERNAL_REPRODUCERS:
        extra = {"w.bin": mutants.external_payload(clean)}
    codes = judge(base, mutants.REPRODUCERS[name](clean), tmp_path, extra)
    refused = {c for c, code in codes.items() if code == 2}
    assert MUST_REFUSE[name] <= refused, codes


def test_the_unparsable_one_byte_change_is_refused_by_flip(bases, tmp_path):
    """One byte of a model changed so that onnx cannot parse it (the issue's MLP offset 4958,
    0x12 -> 0x48: a length-delimited key became an unsupported wire type): flip refused it
    only after the fix; found here by searching the small MLP for such a byte."""
    base = bases["mlp"]
    clean = base.model.read_bytes()
    for offset in range(len(clean) // 2, len(clean)):
        if clean[offset] != 0x12:
            continue
        mutant = mutants.set_byte(clean, offset, 0x48)
        (tmp_path / "probe.onnx").write_bytes(mutant)
        if (malformed(tmp_path / "probe.onnx") or "").startswith("onnx"):
            break
    else:
        pytest.skip("no such byte in this model")
    codes = judge(base, mutant, tmp_path / "case")
    assert codes["flip"] == 2
