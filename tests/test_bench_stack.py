"""The whole-stack capacity benchmark keeps working (CI runs its --quick size; the figures of
full runs are in BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_stack_bench_quick() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.stack_bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| viewers |" in proc.stdout
    results = json.loads((ROOT / "bench" / "results" / "stack-quick.json").read_text())
    loaded = results[-1]
    assert loaded["viewers"] == 20 and loaded["events_total"] > 0 and loaded["latency_samples"] > 0
    print(proc.stdout)
