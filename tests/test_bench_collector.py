"""The collector benchmark runs end to end at CI size (figures printed, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_collector_bench_quick(broker: str, output_dir: Path) -> None:
    out = output_dir / "collector-bench-quick.json"
    cmd = [sys.executable, "-m", "bench.collector_bench", "--quick", "--bootstrap-servers", broker]
    proc = subprocess.run([*cmd, "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    for phase in ("bare", "collector"):
        assert result[phase]["ok"] > 0 and result[phase]["requests_per_s"] > 0
    collector = result["collector"]
    assert collector["non_200"] == {}
    assert collector["events_on_topic"] >= collector["ok"] * result["setup"]["events_per_request"]
    assert collector["bad_rows"] == 0  # the tracker-shaped bodies are all valid
    assert 1200 <= result["setup"]["mean_event_bytes"] <= 2400
    assert "| collector: validated, pseudonymized, enriched, acked |" in proc.stdout
