"""`bench/pipeline_bench.py --quick` runs end to end and prints instruction counts (or, without
valgrind, CPU time) per event for the forwarder's in-process work and the collector's pipeline
with a small and a large audience (sane figures asserted, no target)."""

from __future__ import annotations

import re

import pytest
from support.bench import run_bench


@pytest.mark.slow
def test_pipeline_bench_quick() -> None:
    text = run_bench("pipeline_bench", "--quick", timeout=900)
    assert text.startswith("300 requests of the collector bench's traffic per round"), text
    rows = dict(
        re.findall(r"^\| (forward floor|collector pipeline, [\d,]+ viewers)[^|]*\| ([\d,.]+) \|", text, re.M)
    )
    assert set(rows) == {
        "forward floor",
        "collector pipeline, 200 viewers",
        "collector pipeline, 300 viewers",
    }, text
    floor, small, large = (
        float(rows[k].replace(",", ""))
        for k in ("forward floor", "collector pipeline, 200 viewers", "collector pipeline, 300 viewers")
    )
    assert 0 < floor < small and 0 < floor < large, text  # the collector's checks come on top of parsing
    ratio = re.search(r"^large audience / small audience: ([\d.]+)$", text, re.M)
    assert ratio is not None and 0.5 < float(ratio[1]) < 5, text
