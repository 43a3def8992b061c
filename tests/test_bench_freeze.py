"""`bench/freeze_bench.py --quick` replays a live audience under every setting and prints its
table (no timing asserted)."""

from __future__ import annotations

import re

from support.bench import run_bench


def test_freeze_bench_quick() -> None:
    out = run_bench("freeze_bench", "--quick", timeout=300)
    rows = re.findall(
        r"^\| (never \(baseline\)|[\d.]+ s) \| ([\d,]+) B \| (\d+)% \| ([\d.]+) µs \|$", out, re.M
    )
    assert [r[0] for r in rows] == ["never (baseline)", "45 s", "20 s", "10 s", "5 s", "2 s"]
    memory = {label: int(mem.replace(",", "")) for label, mem, _f, _c in rows}
    frozen = {label: int(f) for label, _m, f, _c in rows}
    assert frozen["never (baseline)"] == 0 and frozen["2 s"] > frozen["10 s"] > 0
    assert memory["2 s"] < memory["10 s"] < memory["never (baseline)"]  # what freezing buys
