"""`bench/profiles_bench.py --quick` runs end to end and prints its table (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_profiles_bench_quick(broker: str, dynamodb_local: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.profiles_bench", "--quick", "--viewers", "60",
         "--bootstrap-servers", broker, "--endpoint-url", dynamodb_local],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "| measure | value | target | met |"
    table = "\n".join(lines)
    for row in (
        "raw confluent-kafka consume",
        "Kafka → state",
        "DynamoDB writes",
        "memory per tracked viewer",
    ):
        assert row in table
    assert "(60 viewers)" in table and "| tracked viewers | 60 |" in table
