"""`bench/decode_bench.py --quick` runs end to end and prints instruction counts (or, without
valgrind, CPU time) per event for the decode floor, the consumer's decoding and its decoding +
engine, each with the cost of starting and loading taken out (sane figures asserted, no target)."""

from __future__ import annotations

import re

import pytest
from support.bench import run_bench


@pytest.mark.slow
def test_decode_bench_quick() -> None:
    text = run_bench("decode_bench", "--quick", timeout=900)
    assert text.startswith("920 enriched lines of 20 viewers"), text
    rows = dict(
        re.findall(
            r"^\| (decode floor|`InputDecoder.decode`|decode \+ engine)[^|]*\| ([\d,.]+) \|", text, re.M
        )
    )
    assert set(rows) == {"decode floor", "`InputDecoder.decode`", "decode + engine"}, text
    floor, decode, engine = (
        float(rows[k].replace(",", "")) for k in ("decode floor", "`InputDecoder.decode`", "decode + engine")
    )
    assert 0 < floor < engine and 0 < decode < engine, text  # the engine's work comes on top of decoding
    ratio = re.search(r"^floor / \(decode \+ engine\): ([\d.]+)$", text, re.M)
    assert ratio is not None and 0 < float(ratio[1]) < 1, text
