"""`bench/writes_bench.py --quick`: the write policies run on the same traffic through the real
consumer, Tansu and DynamoDB Local; the figures exist, nothing is lost, and lazy writes write
less than one write per change (no timing asserted)."""

from __future__ import annotations

import argparse

from support.bench import run_bench

from bench import writes_bench


def test_writes_bench_quick() -> None:
    ns = argparse.Namespace(viewers=30, hours=0.25, scale=60.0, runs=1, quick=True)
    out = writes_bench.measure(ns)
    assert out["lost"] == 0
    lazy, eager = out["medians"]["lazy"], out["medians"]["eager"]
    for m in out["medians"].values():
        assert m["events_per_viewer_hour"] > 100  # 30 s pings: 120 an hour, plus plays and ads
        assert m["writes_per_viewer_hour"] > 0 and m["consumer_cpu_us_per_event"] > 0
        # every profile write is a write request, and status changes add history items
        assert m["requests_per_viewer_hour"] > m["writes_per_viewer_hour"]
    assert set(out["medians"]) == {"lazy", "status at once", "eager"}
    # every change written (about one write per ping) against writes at the cadence and on status
    assert eager["writes_per_viewer_hour"] > 0.6 * eager["events_per_viewer_hour"]
    assert lazy["writes_per_viewer_hour"] < 0.5 * eager["writes_per_viewer_hour"]
    run = out["runs"]["lazy"][0]
    assert run["by_reason"].get("cadence", 0) > 0 and run["by_reason"].get("change", 0) >= 30


def test_writes_bench_prints_its_table() -> None:
    out = run_bench("writes_bench", "--viewers", "10", "--hours", "0.1", "--runs", "1", timeout=600)
    assert "| **lazy** (LVP_PROFILE_WRITE_INTERVAL_S=300, LVP_STATUS_WRITE_DELAY_S=30) | **" in out
    assert "| lazy, status changes at the next flush (LVP_STATUS_WRITE_DELAY_S=0) | " in out
    assert "Events not applied: 0." in out
