"""`lvp simulate` against the real collector and broker: every event sent is accepted and lands
on the good topic under the viewer's pseudonym; expectations are written; refusals and broken
connections are retried."""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from collector_server import read_topic, serve_collector
from conftest import TEST_KEY
from support.scripted_http import Scripted, scripted

from lvp.config import Settings
from lvp.enriched import from_tsv
from lvp.events import from_enriched
from lvp.local.broker import free_port
from lvp.local.simulate import TP2_PATH, Counters, Sender, Traffic, Viewer, expectations, simulate
from lvp.pseudonym import pseudonymize


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


@pytest.mark.slow  # waits out --give-up-after
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
    assert (
        "was unreachable for 2 s (ConnectionRefusedError" in proc.stderr
        and "events not delivered" in proc.stderr
    )
    assert "\r" not in proc.stderr  # not a terminal: progress as whole lines


def test_long_pauses_ping_once_then_go_quiet_for_minutes() -> None:
    """A long pause: the pause, one ping while paused (the media plugin's maxPausedPings = 1), then
    nothing until play, minutes later."""
    found = 0
    for seed in range(60):
        steps = list(Viewer(seed, random.Random(seed), "app").script(30, 1800, long_pauses=1.0))
        for i, (_, name, _) in enumerate(steps[:-2]):
            if name == "pause" and steps[i + 2][1] == "play":
                ping_wait, ping_name, _ = steps[i + 1]
                play_wait = steps[i + 2][0]
                assert ping_name == "ping" and ping_wait == 30
                assert 60 <= ping_wait + play_wait <= 600
                found += 1
    assert found >= 3
    short = Viewer(1, random.Random(1), "app").script(30, 1800, long_pauses=0.0)
    pauses = [w for (_, n, _), (w, n2, _) in itertools.pairwise(short) if n == "pause" and n2 == "play"]
    assert all(w <= 90 for w in pauses)


def test_traffic_shapes_late_duplicates_and_ids_in_urls(lvp_settings: Settings) -> None:
    """Late events reach the collector seconds after they happened (derived time before the
    collector time), duplicates carry the same event id, raw ids inside page URLs are scrubbed
    by the collector: none of them is on the good topic."""
    traffic = Traffic(late=0.15, late_s=(1.5, 2.5), duplicates=0.1, url_ids=1.0)
    with serve_collector(lvp_settings) as running:
        population, counters = asyncio.run(
            simulate(
                running.url, 8, 60, ping_interval=5, time_scale=20, batch_size=20, seed=3, progress=None,
                traffic=traffic,
            )
        )  # fmt: skip
    assert counters.accepted == counters.sent == sum(v.events_sent + v.duplicates for v in population)
    assert counters.duplicates > 0 and counters.late > 0
    lines = read_topic(lvp_settings.kafka_bootstrap_servers, lvp_settings.topic_good, counters.sent)
    assert len(lines) == counters.sent
    rows = [from_tsv(value) for _, value in lines]
    by_id = Counter(r["event_id"] for r in rows)
    assert sum(n - 1 for n in by_id.values()) == counters.duplicates
    assert len(by_id) == sum(v.events_sent for v in population)
    events = [from_enriched(r) for r in rows]
    delayed = [e for e in events if e.collector_ts - e.derived_ts >= 1.4]
    assert len(delayed) >= counters.late  # held back 1.5-2.5 s (duplicates may come later still)
    blob = b"".join(value for _, value in lines)
    assert all(v.ids_in_url for v in population)
    assert b"watch/" in blob and b"viewer=" in blob  # the URLs are there, their raw ids are not
    for v in population:
        assert v.duid.encode() not in blob
        if v.uid:
            assert v.uid.encode() not in blob and v.uid.replace("@", "%40").encode() not in blob


def test_many_viewers_share_one_scheduler_not_a_task_each(lvp_settings: Settings) -> None:
    """2,000 viewers are driven by one loop: the number of asyncio tasks stays at the connections
    plus a few helpers, whatever the audience, and every event is still accepted."""
    most_tasks = 0

    async def run() -> tuple[list[Viewer], Counters]:
        nonlocal most_tasks
        sim = asyncio.create_task(
            simulate(
                running.url, 2000, 20, ping_interval=10, time_scale=40, batch_size=500, connections=4,
                seed=5, progress=None, linger_s=0.05,
            )
        )  # fmt: skip
        while not sim.done():
            most_tasks = max(most_tasks, len(asyncio.all_tasks()))
            await asyncio.sleep(0.05)
        return await sim

    with serve_collector(lvp_settings) as running:
        population, counters = asyncio.run(run())
    assert len(population) == 2000 and counters.sessions == 2000
    assert counters.sent == counters.accepted == sum(v.events_sent for v in population) > 2000 * 5
    assert counters.requests < counters.sent / 20  # batched: many events per POST
    # 4 connection workers, the run, its reporter, this watcher, a few transient ones (closing,
    # waits): a task per viewer would be 2,000
    assert most_tasks <= 20


def test_run_for_keeps_the_audience_then_delivers_everything(lvp_settings: Settings) -> None:
    """--run-for keeps N sessions going (a viewer who leaves is replaced), then cuts them where they
    are and delivers every event generated; each cut viewer's expected status is that of its last
    event sent."""
    with serve_collector(lvp_settings) as running:
        population, counters = asyncio.run(
            simulate(
                running.url, 10, 30, ping_interval=5, time_scale=30, batch_size=20, seed=9, progress=None,
                run_for=4.0, ramp_s=0.2,
            )
        )  # fmt: skip
    assert counters.sessions == len(population) > 10  # short sessions: leavers were replaced
    assert counters.sent == counters.accepted == sum(v.events_sent for v in population)
    lines = read_topic(lvp_settings.kafka_bootstrap_servers, lvp_settings.topic_good, counters.sent)
    events = sorted((from_enriched(from_tsv(value)) for _, value in lines), key=lambda e: e.derived_ts)
    last = {e.viewer_id: e.name for e in events}
    key = TEST_KEY.encode()
    checked = 0
    for row, v in zip(expectations(population, key), population, strict=True):
        if v.events_sent == 0:
            continue
        want = {"pause": "paused", "end": "ended", "play": "watching", "buffer_start": "buffering"}
        name = last[row["viewer_id"]]
        if name in want and v.ad_break is None:
            assert row["expected_status"] == want[name], (name, row)
            checked += 1
    assert checked >= 5


def test_cli_stops_on_sigterm_and_delivers_what_it_generated(lvp_settings: Settings, tmp_path: Path) -> None:
    """SIGTERM: stop generating, deliver everything; --summary shows the run while it goes on."""
    summary = tmp_path / "summary.json"
    with serve_collector(lvp_settings) as running:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lvp.cli", "simulate", "--viewers", "50", "--duration", "3600",
             "--run-for", "600", "--ramp", "1", "--linger", "0.05", "--collector", running.url,
             "--summary", str(summary), "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={"LVP_PSEUDONYM_KEY": TEST_KEY, "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        time.sleep(5)  # start-up, then the audience joins over 1 s and plays
        live = orjson.loads(summary.read_bytes())  # rewritten every second while it runs
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert live["live"] == 50 and live["sent"] >= 50 and "done" not in live
    assert live["pending"] >= 0 and live["accepted"] <= live["sent"]
    got = orjson.loads(summary.read_bytes())
    assert got["sent"] == got["accepted"] >= 50 and got["gave_up"] is None
    assert got["done"] is True and got["pending"] == 0 and got["sent"] >= live["sent"]
    assert f"{got['accepted']} accepted" in out and "0 refused/failed" in out


def test_sender_retries_refusals_and_broken_connections_until_every_event_is_accepted() -> None:
    """503 with Retry-After, a 429 and a 500 are retried (the same events again; a kept-alive
    connection the server dropped before answering is opened again by the client itself); a 400
    is not: its events were refused for good (the collector wrote bad rows)."""
    answers = {
        1: b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0.05\r\nContent-Length: 4\r\n\r\nbusy",
        2: b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n",
        3: b"",  # the kept-alive connection closes without an answer (idle timeout, restart)
        4: b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
    }

    def script(n: int, body: bytes) -> bytes:
        if n in answers:
            return answers[n]
        if b'"e":"pv"' in body:  # the second batch: refused for good
            return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad"
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def run() -> tuple[Counters, Scripted]:
        counters = Counters()
        async with scripted(script) as (srv, url):
            sender = Sender(url.removesuffix(TP2_PATH), 10, 1, counters)
            v = Viewer(0, random.Random(5), "retry-test")
            first = [v.event("ready"), v.event("play")]
            for item in first:
                sender.put(0, item)
            while counters.accepted < 2:
                await asyncio.sleep(0.01)
            sender.put(0, v.event("page_view"))
            await sender.close()
        return counters, srv

    counters, srv = asyncio.run(asyncio.wait_for(run(), 30))
    assert counters.accepted == 2 and counters.retried == 6 and counters.failed_requests == 1
    assert counters.requests == 5  # the dropped request and its 500 were one attempt
    bodies = [orjson.loads(body) for _, _, body in srv.requests]
    eids = [[e["eid"] for e in b["data"]] for b in bodies]
    assert eids[0] == eids[1] == eids[2] == eids[3] == eids[4] and len(eids[0]) == 2  # same events again
    assert [c for c, _, _ in srv.requests] == [1, 1, 1, 2, 2, 2]  # a new connection after the drop
