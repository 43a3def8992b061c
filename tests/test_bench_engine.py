"""`bench/engine_bench.py --quick` runs and prints every measure (no timing asserted)."""

from __future__ import annotations

import re

from support.bench import run_bench


def test_engine_bench_quick() -> None:
    out = run_bench("engine_bench", "--quick", timeout=300)
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
