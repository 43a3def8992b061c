"""The `lvp` entry point: a closed output pipe ends a command quietly (exit 141, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_reader_that_goes_away_gets_no_traceback() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `lvp profile list --active | head -1` once head has its line
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lvp.cli", "settings"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
