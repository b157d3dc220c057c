"""The README's two set-up commands are the ones CI runs, so the README cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- setup -->\s*```(?:sh|bash)?\n(.*?)```", text, re.S)
    assert block, "README.md must have a ```sh block after <!-- setup -->"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_ci_runs_the_readme_commands_verbatim():
    install, tests = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install in ci and tests in ci
    assert "qtool demo" in install
