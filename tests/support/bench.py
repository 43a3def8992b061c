"""Running a benchmark as CI does: ``python -m bench.<name> ...`` from the repository root, its
table returned (and printed, for the log), a failed run reported with its output's tail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def run_bench(name: str, *args: str, timeout: float = 600) -> str:
    """stdout of ``python -m bench.<name> *args``; fails the test if it exits non-zero."""
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    print(proc.stdout)
    return proc.stdout
