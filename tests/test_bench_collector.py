"""The collector benchmark runs end to end at CI size against the session broker: its figures
must exist and be sane (the target itself is checked by full runs, see BENCHMARKS.md)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench.collector_bench import traffic, traffic_summary

ROOT = Path(__file__).resolve().parent.parent


def test_traffic_is_tracker_shaped() -> None:
    requests = traffic(600)
    summary = traffic_summary(requests)
    assert all(n > 0 for n in summary["by_kind"].values())  # tp2 POSTs, GET pixels, duplicates
    posts = [r for r in requests if r.kind == "tp2"]
    assert {r.events for r in posts} == set(range(1, 11))
    bodies = b"".join(r.body for r in posts)
    assert bodies.count(b"ping_event") > bodies.count(b"play_event") * 3  # mostly pings
    assert b"%40example.com" in bodies  # an e-mail address in a page URL
    assert b'"url":"http://198.51.' in bodies  # a client IP as a page URL's host
    assert any(b"/ad/jsonschema" in r.body for r in posts)
    assert any(r.head.startswith(b"GET /i?e=p") for r in requests)


def test_collector_bench_quick(broker: str, output_dir: Path) -> None:
    out = output_dir / "collector-bench-quick.json"
    cmd = [sys.executable, "-m", "bench.collector_bench", "--quick", "--split", "--bootstrap-servers", broker]
    proc = subprocess.run([*cmd, "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert len(result["runs"]) == result["setup"]["runs"] == 2
    phases = ("forwarder", "collector", "collector-serving")
    assert result["phases"] == list(phases)
    for run in result["runs"]:
        for phase in phases:
            p = run[phase]
            assert p["events"] > 0 and p["events_per_s"] > 0 and p["events_per_cpu_s"] > 0
            assert p["server_cpu_s"] > 0
            assert p["non_200"] == {}, p["all_codes"]
            # no loss, warm-up and drain included: exactly the acknowledged events, no more
            assert p["acked_events_total"] >= p["events"]
            assert p["events_on_topic"] == p["acked_events_total"]
            assert p["lost"] == 0
        assert run["collector"]["bad_rows"] == 0  # the tracker-shaped traffic is all valid
        assert run["ratio"] > 0 and run["serving_ratio"] > 0
    for phase in phases:
        assert result[phase]["events_per_cpu_s"] > 0 and result[phase]["lost"] == 0
    assert result["ratio"] == statistics.median(r["ratio"] for r in result["runs"]) > 0
    assert f"median **{result['ratio']:.2f}**" in proc.stdout
    assert "| collector: validated, pseudonymized, enriched, acked |" in proc.stdout
    # the packages both servers are made of, as installed (a release of any moves the figures)
    from importlib import metadata

    packages = result["machine"]["packages"]
    assert packages["starlette"] == metadata.version("starlette")
    assert packages["confluent-kafka"] == metadata.version("confluent-kafka")
    assert f"starlette {packages['starlette']}" in proc.stdout
    # --split: the collector's server with a pipeline that only serializes, as the forwarder does
    assert result["serving_ratio"] == statistics.median(r["serving_ratio"] for r in result["runs"]) > 0
    assert (
        f"Collector without its pipeline / forwarder: median **{result['serving_ratio']:.2f}**" in proc.stdout
    )
