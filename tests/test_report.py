"""Progress without a terminal: plain lines on stderr, at most every few seconds."""

from __future__ import annotations

from qtool import report
from qtool.report import LineProgress


def _lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line]


def test_first_update_and_the_end_are_printed_and_the_rest_throttled(capsys):
    with LineProgress(interval=3600) as bar:
        task = bar.add_task("bit search", total=4, status="")
        for k in range(4):
            bar.update(task, advance=1, status=f"accuracy {90 - k} %")
    lines = _lines(capsys)
    assert len(lines) == 2, lines
    assert lines[0].startswith("bit search: 1/4 (25 %) accuracy 90 % - 0:00:00 elapsed")
    assert "left" in lines[0]
    assert lines[1].startswith("bit search: 4/4 (100 %) accuracy 87 %")


def test_every_update_is_printed_with_no_interval(capsys):
    with LineProgress(interval=0) as bar:
        task = bar.add_task("flip trials", total=None)
        for _ in range(3):
            bar.advance(task)
    assert [line.split(" -")[0] for line in _lines(capsys)] == [
        "flip trials: 1",
        "flip trials: 2",
        "flip trials: 3",
    ]


def test_an_unfinished_task_prints_its_last_state_on_exit(capsys):
    with LineProgress(interval=3600) as bar:
        task = bar.add_task("flip trials", total=10)
        bar.update(task, advance=1)
        bar.update(task, advance=2)  # throttled
    lines = _lines(capsys)
    assert lines[-1].startswith("flip trials: 3/10 (30 %)")


def test_hidden_tasks_print_nothing(capsys):
    with LineProgress(interval=0) as bar:
        task = bar.add_task("bit search", total=2)
        bar.update(task, visible=False)
        bar.update(task, advance=2)
    assert _lines(capsys) == []


def test_progress_is_lines_without_a_terminal_and_nothing_when_quiet():
    assert isinstance(report.progress(), LineProgress)  # pytest's stderr is no terminal
    report.set_quiet(True)
    try:
        assert not isinstance(report.progress(), LineProgress)
    finally:
        report.set_quiet(False)
