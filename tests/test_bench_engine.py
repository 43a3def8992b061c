"""`bench/engine_bench.py --quick` runs and prints every measure (no timing asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_engine_bench_quick() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.engine_bench", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("50 viewers x 73 events")
    for row in (
        "apply+fold, as delivered",
        "consumer loop, flush every",
        "a ping to a quiet viewer kept hot",
        "a ping to a quiet viewer kept frozen",
    ):
        assert re.search(re.escape(row) + r".*?\d+\.\d+ µs", out), row
    memory = {m[1]: int(m[2]) for m in re.finditer(r"memory per viewer, (.+?) +(\d+) bytes", out)}
    assert list(memory) == ["as applied", "compacted", "frozen (compact(freeze=True))"]
    assert memory["frozen (compact(freeze=True))"] < memory["compacted"]  # what LVP_FREEZE_AFTER_S buys
