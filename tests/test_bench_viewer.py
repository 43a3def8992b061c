"""The viewer fan-out benchmark runs end to end at CI size (figures printed, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_viewer_bench_quick(broker: str, output_dir: Path) -> None:
    out = output_dir / "viewer-bench-quick.json"
    cmd = [sys.executable, "-m", "bench.viewer_bench", "--quick", "--bootstrap-servers", broker]
    proc = subprocess.run(
        [*cmd, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    fan_out = result["phases"][0]
    assert fan_out["clients_connected"] == result["setup"]["clients"]
    assert fan_out["frames_per_client_min"] > 0  # every client received deltas
    assert "| push_latency_p99_s |" in proc.stdout
