"""The whole-stack benchmark keeps working: CI runs its --quick size (idle stack, then 20 viewers
with pings every 4 s, two runs, medians) and checks that the figures exist and are sane, not only
that the table is printed. The figures of full runs are in BENCHMARKS.md."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from support.bench import run_bench

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = ("simulator", "collector", "profiles", "viewer", "broker", "dynamodb")


def _positive(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_stack_bench_quick() -> None:
    out = run_bench("stack_bench", "--quick", timeout=900)
    doc = json.loads((ROOT / "bench" / "results" / "stack-quick.json").read_text())
    assert len(doc["runs"]) == 2 and all(len(run) == 2 for run in doc["runs"])
    # each level on a stack started for it: the loaded level inherits nothing of the idle one
    assert all(run[0]["stack"] != run[1]["stack"] for run in doc["runs"])
    idle, loaded = doc["median"]
    assert idle["viewers"] == 0 and idle["events"] == 0 and idle["lag_after"] == 0
    assert loaded["viewers"] == 20 and loaded["runs"] == 2
    # the load went through the whole path and nothing was lost
    assert _positive(loaded["events_per_s"]) and _positive(loaded["sim_accepted"])
    assert loaded["sim_sent"] == loaded["sim_accepted"] == loaded["collector_good"]
    assert loaded["lost"] == 0 and loaded["bad_rows"] == 0
    assert loaded["lag_after"] == 0 and loaded["drain_s"] >= 0  # measured after the load stopped
    # lazy writes: the offsets are committed too, once the viewers went quiet and were written
    assert loaded["committed_lag_after"] == 0 and loaded["commit_s"] >= loaded["drain_s"]
    # the viewer's metrics were read (they need the token) and its window held the audience
    assert loaded["active_viewers"] > 0 and loaded["window_viewers"] > 0
    # event -> SSE latency, status changes and pings apart, at the SSE client and in the page
    for kind in ("status", "ping"):
        assert loaded[f"sse_{kind}_n"] > 0, kind
        assert _positive(loaded[f"sse_{kind}_p50_s"]) and _positive(loaded[f"sse_{kind}_p99_s"]), kind
        assert loaded[f"sse_{kind}_p50_s"] <= loaded[f"sse_{kind}_p99_s"] < 60, kind
    if Path("/usr/bin/chromium").exists():
        assert loaded["page_error"] == "" and loaded["page_status_n"] > 0
        assert _positive(loaded["page_status_p99_s"])
    # where the CPU goes: every component, per event
    for name in COMPONENTS:
        assert _positive(loaded["cpu_us_per_event"][name]), name
        assert _positive(loaded["cpu_pct"][name]), name
    # DynamoDB writes next to one write per event; memory per viewer held
    assert _positive(loaded["dynamodb_writes"]) and _positive(loaded["writes_per_viewer_hour"])
    assert _positive(loaded["events_per_viewer_hour"])
    assert 0 < loaded["writes_per_event"] < 5
    for name in ("profiles", "viewer"):
        assert loaded["bytes_per_viewer"][name] >= 0 and _positive(loaded["rss_mb"][name])
    table = out
    assert "a stack started for each level" in table.splitlines()[0]
    assert "| viewers | events/s |" in table and "| 20 |" in table and "nan" not in table.split("| 20 |")[1]
