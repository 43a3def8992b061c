"""`bench/memory_bench.py --quick` replays a live audience with the baseline engine and the current
one (settle() after each read) and prints medians: the figures must exist and be sane (no timing
or memory target asserted beyond what settling must buy)."""

from __future__ import annotations

import re

from support.bench import run_bench


def test_memory_bench_quick() -> None:
    out = run_bench("memory_bench", "--quick", timeout=600)
    assert re.match(r"100 viewers, [\d,]+ events .*median of 3 runs", out), out[:300]
    rows = re.findall(r"^\| (.+?) \| ([\d,]+) B \| ([\d,]+) B \| ([\d.]+) µs \|$", out, re.M)
    assert [r[0] for r in rows] == ["before issue #11 (baseline)", "settle() after each read"]
    figures = {r[0]: (int(r[1].replace(",", "")), int(r[2].replace(",", "")), float(r[3])) for r in rows}
    for playing, tracked, cpu in figures.values():
        assert 200 < playing < 20_000 and 200 < tracked < 20_000 and 0.0 < cpu < 10_000.0
    base, new = figures["before issue #11 (baseline)"], figures["settle() after each read"]
    assert new[0] < base[0] / 2  # what settling buys a playing viewer (the ~3x is in BENCHMARKS.md)
    ratio = re.search(r"memory per playing viewer ([\d.]+)x, CPU per event ([\d.]+)x", out)
    assert ratio is not None and 0.0 < float(ratio[1]) < 1.0 and float(ratio[2]) > 0.0
    exact = re.search(r"final profiles that differ from the baseline engine's: (\d+) of (\d+)", out)
    assert exact is not None and exact[1] == "0" and int(exact[2]) == 300  # 100 viewers x 3 runs
