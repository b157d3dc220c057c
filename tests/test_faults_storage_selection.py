"""Selection and FlipSettings: typed values checked, each error naming its parameter."""

from __future__ import annotations

import pytest

from qtool.errors import QtoolError
from qtool.faults.storage.selection import FlipSettings, Selection, selection_of_record


def test_defaults_and_roles():
    s = Selection()
    assert s.targets == ("weights",) and s.positions == ("any",) and s.fault == "flip"
    assert s.roles() == {"weight"}
    assert Selection(targets=("weights", "qparams")).roles() == {"weight", "qparam"}
    assert Selection(targets=("biases", "all")).roles() is None
    assert Selection(fault="stuck-at-0").fault == "reset"  # aliases resolve to the name


@pytest.mark.parametrize(
    "kwargs, param, message",
    [
        ({"targets": ("everything",)}, "targets", "unknown target class 'everything'"),
        ({"targets": ()}, "targets", "at least one target class"),
        ({"positions": ("middle",)}, "positions", "unknown bit position 'middle'"),
        ({"positions": (64,)}, "positions", "bit 64 is not in 0-63"),
        ({"positions": ()}, "positions", "at least one"),
        ({"layers": "("}, "layers", "not a regular expression"),
        ({"fault": "rowhammer"}, "fault", "unknown fault model 'rowhammer'"),
        ({"bits": -1}, "bits", "0 or more"),
        ({"seed": -3}, "seed", "0 or more"),
    ],
)
def test_bad_values_name_their_parameter_and_no_flag(kwargs, param, message):
    with pytest.raises(QtoolError, match=message) as caught:
        FlipSettings(**kwargs)
    assert caught.value.param == param and "--" not in str(caught.value)


def test_lists_become_tuples_and_the_record_round_trips():
    s = FlipSettings(targets=["weights", "biases"], positions=["msb", 0, 30], layers="fc")
    assert s.targets == ("weights", "biases") and s.positions == ("msb", 0, 30)
    record = {
        "targets": s.targets_text,
        "positions": s.positions_text,
        "layers": s.layers,
        "fault": s.fault,
    }
    assert record == {"targets": "weights,biases", "positions": "msb,0,30", "layers": "fc",
                      "fault": "flip"}  # fmt: skip
    assert selection_of_record(record) == Selection(
        targets=("weights", "biases"), positions=("msb", 0, 30), layers="fc"
    )
    assert selection_of_record({**record, "targets": "weights, biases"}).targets == s.targets
    assert s.pattern().search("fc1") and Selection().pattern() is None
