"""README is the front door: its two commands exist, CI runs the test one, and its generated
sections (settings, transition table) match the code."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from update_readme import render  # noqa: E402


def test_generated_sections_are_current() -> None:
    text = (ROOT / "README.md").read_text()
    assert render(text) == text, "README is out of date: run .venv/bin/python scripts/update_readme.py"
    assert "| `ready` |" in text and "| `LVP_PSEUDONYM_KEY` |" in text


def test_two_commands_and_ci() -> None:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Two commands\n\n```sh\n(.*?)```", text, flags=re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["make up", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^up: ", makefile, flags=re.M) and re.search(r"^test: ", makefile, flags=re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
