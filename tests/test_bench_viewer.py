"""The viewer benchmark runs end to end at CI size, and its figures exist and are sane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_viewer_bench_quick(broker: str, output_dir: Path) -> None:
    out = output_dir / "viewer-bench-quick.json"
    cmd = [sys.executable, "-m", "bench.viewer_bench", "--quick", "--bootstrap-servers", broker]
    proc = subprocess.run([*cmd, "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=400)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    fan_out = result["fan_out"]
    assert list(fan_out) == ["1", "10", "40"]
    for clients, r in fan_out.items():
        assert r["runs"] == 2 and r["clients_connected"] == int(clients)
        assert r["lost"] == 0  # no client dropped, disconnected or left without frames
        assert r["changes_per_s"] > 0 and r["cpu_us_per_change"] > 0 and r["cpu_pct"] > 0
        assert r["frames_per_client_s"] > 0 and r["pushes_per_s"] > 0
        assert 0 < r["bytes_per_push_per_client"] < 100_000  # a window's rows, not every change
        assert r["push_latency_p50_s"] > 0 and r["push_latency_p99_s"] >= r["push_latency_p50_s"]
        # the first frame is a snapshot of the 200-row window, not of the 2,000 viewers
        assert 10_000 < r["snapshot_frame_bytes"] < 2_000 * 800
    memory = result["memory"]
    assert memory["viewers_held"] == result["setup"]["viewers"] == 2000
    assert 100 < memory["view_bytes_per_viewer"] < 20_000 and memory["profile_json_bytes"] > 100
    assert memory["server_rss_mb"] > 0 and 0 < result["snapshot_rest_bytes"] < 2_000 * 800
    page = result["page"]
    assert page["page_rows"] == 200 and page["page_errors"] == 0
    assert (
        page["page_chromium_cpu_pct_load"] > 0
        and page["page_chromium_cpu_pct_idle"] > 0
        and page["page_heap_mb_load"] > 0
    )
    # event -> page in Chromium: every status flip showed on the page
    assert page["page_changes"] == 5 and page["page_missed"] == 0
    assert 0 < page["page_p50_s"] <= page["page_p99_s"] < 5
    assert "| cpu_us_per_change |" in proc.stdout
