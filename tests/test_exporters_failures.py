"""exporters.failures: the cause of an exporter failure as one clean line, advice by kind."""

from __future__ import annotations

from qtool.exporters.failures import FAILURE_ADVICE, advice_for, failure_cause

DYNAMO_TEXT = (
    "Failed to export the model with torch.export. \x1b[96mThis is step 1/3\x1b[0m of exporting "
    "the model to ONNX. Next steps:\n- Modify the model code\n\n## Exception summary\n\n"
    "<class 'RuntimeError'>: Given groups=1, weight of size [3, 1, 3, 3], expected input[s31, "
    "3, 8, 8] to have 1 channels, but got 3 channels instead\n\n(Refer to the full stack trace)"
)


def test_the_exception_summary_is_the_cause_without_ansi_codes():
    cause = failure_cause(RuntimeError(DYNAMO_TEXT))
    assert cause.startswith("RuntimeError: Given groups=1")
    assert "\x1b" not in cause and "\n" not in cause and "step 1/3" not in cause
    assert advice_for(cause, "default").startswith("the input shape is wrong")


def test_other_causes_first_line_and_advice_by_kind():
    cause = failure_cause(ValueError("\x1b[31mConstraints violated (batch)!\x1b[0m\nmore"))
    assert cause == "ValueError: Constraints violated (batch)!"
    assert "static batch size" in advice_for(cause, "default")
    assert "opset" in advice_for("aten::foo is not supported", "default")
    assert advice_for("something else entirely", "the hint") == "the hint"
    assert len({entry.kind for entry in FAILURE_ADVICE}) == len(FAILURE_ADVICE)
