"""`lvp simulate` against the real collector and broker: every event sent is accepted and lands
on the good topic under the viewer's pseudonym; expectations are written; 503s are retried."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
from collector_server import read_topic, serve_collector
from conftest import TEST_KEY

from lvp.broker import free_port
from lvp.config import Settings
from lvp.enriched import from_tsv
from lvp.events import from_enriched
from lvp.pseudonym import pseudonymize
from lvp.simulate import Viewer, expectations, simulate


def test_script_is_a_plausible_media_session() -> None:
    v = Viewer(0, random.Random(3), "app")
    names = [name for _, name, _ in v.script(ping_interval=10, length=120)]
    assert names[0] == "page_view" and names[1] == "ready"
    assert "play" in names and "ping" in names
    if v.status == "ended":
        assert names[-1] == "end"
    item = v.event("play", None)  # built when it happens, with the player's current state
    assert item["e"] == "ue" and item["duid"] == v.duid and "media_player" in item["co"]
    # ad events only between a break's start and end
    depth = 0
    for n in names:
        depth += n == "ad_break_start"
        depth -= n == "ad_break_end"
        if n.startswith("ad_") and n not in ("ad_break_start", "ad_break_end"):
            assert depth == 1, names


def test_simulated_viewers_reach_the_good_topic_pseudonymized(lvp_settings: Settings) -> None:
    with serve_collector(lvp_settings) as running:
        population, counters = asyncio.run(
            simulate(
                running.url, 6, 60, ping_interval=5, time_scale=200, batch_size=7, seed=11, progress=None
            )
        )
    assert counters.sent == counters.accepted == sum(v.events_sent for v in population) > 6 * 5
    lines = read_topic(lvp_settings.kafka_bootstrap_servers, lvp_settings.topic_good, counters.sent)
    assert len(lines) == counters.sent
    events = [from_enriched(from_tsv(value)) for _, value in lines]
    per_viewer = Counter(e.viewer_id for e in events)
    key = TEST_KEY.encode()
    rows = expectations(population, key)
    for v, row in zip(population, rows, strict=True):
        assert row["viewer_id"] == pseudonymize(v.uid or v.duid, key)
        assert per_viewer[row["viewer_id"]] == v.events_sent
        assert row["expected_status"] in {"idle", "watching", "paused", "watching_ad", "buffering", "ended"}
    blob = b"".join(value for _, value in lines)
    for v in population:
        assert v.duid.encode() not in blob
        if v.uid:
            assert v.uid.encode() not in blob


def test_cli_writes_expectations_and_summary(lvp_settings: Settings, tmp_path: Path) -> None:
    expect = tmp_path / "expect.jsonl"
    with serve_collector(lvp_settings) as running:
        proc = subprocess.run(
            [sys.executable, "-m", "lvp.cli", "simulate", "--viewers", "3", "--duration", "30",
             "--time-scale", "100", "--ping-interval", "5", "--collector", running.url,
             "--expect", str(expect), "--seed", "5"],
            capture_output=True, text=True, timeout=120,
            env={"LVP_PSEUDONYM_KEY": TEST_KEY, "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "simulated 3 viewers" in proc.stdout and "0 refused/failed" in proc.stdout
    assert "HTTP Request:" not in proc.stderr  # httpx's line per request: only with --log-level debug
    rows = [orjson.loads(line) for line in expect.read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["viewer_id"]) == 64 for r in rows)


def test_cli_gives_up_on_an_unreachable_collector() -> None:
    """Failed connections are retried (a collector restarting), but a collector unreachable for
    --give-up-after seconds ends the run with exit 1 and says why, instead of retrying forever."""
    closed = free_port()
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "lvp.cli", "simulate", "--viewers", "2", "--duration", "600",
         "--ping-interval", "5", "--collector", f"http://127.0.0.1:{closed}", "--give-up-after", "2"],
        capture_output=True, text=True, timeout=120,
        env={"LVP_PSEUDONYM_KEY": TEST_KEY, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert time.monotonic() - started < 60  # the 600 s sessions were stopped too
    assert f"lvp: gave up: the collector at http://127.0.0.1:{closed}/" in proc.stderr
    assert "was unreachable for 2 s (ConnectError" in proc.stderr and "events not delivered" in proc.stderr
    assert "\r" not in proc.stderr  # not a terminal: progress as whole lines
