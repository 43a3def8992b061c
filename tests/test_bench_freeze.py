"""`bench/freeze_bench.py --quick` replays a live audience under every setting and prints its
table (no timing asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_freeze_bench_quick() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.freeze_bench", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = re.findall(
        r"^\| (never \(baseline\)|[\d.]+ s) \| ([\d,]+) B \| (\d+)% \| ([\d.]+) µs \|$", proc.stdout, re.M
    )
    assert [r[0] for r in rows] == ["never (baseline)", "45 s", "20 s", "10 s", "5 s", "2 s"]
    memory = {label: int(mem.replace(",", "")) for label, mem, _f, _c in rows}
    frozen = {label: int(f) for label, _m, f, _c in rows}
    assert frozen["never (baseline)"] == 0 and frozen["2 s"] > frozen["10 s"] > 0
    assert memory["2 s"] < memory["10 s"] < memory["never (baseline)"]  # what freezing buys
