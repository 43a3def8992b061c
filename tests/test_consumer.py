"""The profiles consumer end to end: Tansu broker + DynamoDB Local / moto server.

The reference for every delivery is an in-order run of the engine (``expected``); the first test
also pins the values of a full session by hand."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from enriched_factory import MOBILE_UA, Ad, MediaSessionBuilder, full_session, interleave
from prometheus_client import generate_latest
from support.profiles import (
    committed_total,
    consumer_thread,
    dump_tables,
    expected,
    produce,
    read_topic,
    run_consumer,
    settings_env,
    wait_for,
)
from tcpproxy import TcpProxy

from lvp.config import ConfigError, Settings
from lvp.dynamo import create_tables
from lvp.enriched import parse_tstamp
from lvp.kafka import create_topics
from lvp.local.broker import free_port
from lvp.pseudonym import pseudonymize
from profiles.consumer import ProfilesConsumer

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "snowplow-enriched-sample.tsv"
TEST_KEY = "test-pseudonym-key-not-secret-0123"
RAW_DUID = "143f9cb9-3db9-4e99-8d67-c8aea075d190"
RAW_NUID = "d8aae409-b64d-40c0-99d7-5324fcb27735"


def ready(settings: Settings) -> Settings:
    create_topics(settings)
    create_tables(settings)
    return settings


@pytest.fixture
def env(make_settings: Callable[..., Settings], dynamodb_endpoint: str) -> Settings:
    return ready(
        make_settings(
            aws_endpoint_url=dynamodb_endpoint,
            flush_interval_s=0.2,
            publish_interval_s=0.05,
            profiles_metrics_port=0,
        )
    )


def sessions(start_ms: int) -> list[MediaSessionBuilder]:
    a = full_session("viewer-a", start_ms)
    b = MediaSessionBuilder("viewer-b", start_ms + 500, useragent=MOBILE_UA, id_column="user_id")
    b.page_view().ready().wait(2).play().wait(30).end().wait(5).play().wait(12).pause().wait(8).page_ping()
    c = MediaSessionBuilder("viewer-c", start_ms + 900)
    c.ready().play().wait(8).buffer(4).wait(3).ad_break([Ad("c-ad", 6, click=True)]).wait(10).pause()
    return [a, b, c]


def lines_of(pairs: list[tuple[str, str]]) -> list[str]:
    return [line for _key, line in pairs]


A_HISTORY = [
    ("idle", "watching_ad", "ad_break_start"),
    ("watching_ad", "idle", "ad_break_end"),
    ("idle", "watching", "play"),
    ("watching", "paused", "pause"),
    ("paused", "watching", "play"),
    ("watching", "buffering", "buffer_start"),
    ("buffering", "watching", "buffer_end"),
    ("watching", "watching_ad", "ad_break_start"),
    ("watching_ad", "paused", "ad_break_end"),
    ("paused", "watching", "play"),
    ("watching", "ended", "end"),
]


def test_full_sessions_give_the_exact_profiles_and_histories(env: Settings) -> None:
    builders = sessions(int(time.time() * 1000) - 400_000)
    pairs = interleave(builders)
    bad = [(None, "not an event"), ("viewer-a", "\t".join(["x"] * 20))]
    produce(env, [*pairs[:50], *bad, *pairs[50:]])
    consumer = run_consumer(env)

    stored = dump_tables(env)
    assert stored == expected(lines_of(pairs))
    a, ab = stored["viewer-a"], builders[0]
    assert {k: a["profile"][k] for k in A_EXPECTED} == A_EXPECTED
    assert a["profile"]["play_time_s"] == ab.stats["timePlayed"]
    assert a["profile"]["ad_time_s"] == ab.stats["timeSpentAds"]
    assert a["profile"]["events"] == len(ab.rows)
    assert [(h["prev_status"], h["status"], h["event_name"]) for h in a["history"]] == A_HISTORY
    b = stored["viewer-b"]["profile"]
    assert (b["status"], b["plays"], b["device_class"]) == ("paused", 2, "mobile")  # replay left `ended`
    assert [h["status"] for h in stored["viewer-b"]["history"]] == ["watching", "ended", "watching", "paused"]
    c = stored["viewer-c"]["profile"]
    assert (c["status"], c["buffer_events"], c["ads_clicked"], c["ad_breaks"]) == ("paused", 1, 1, 1)

    # unparseable messages: bad rows, the consumer carried on
    rows = [orjson.loads(v) for _k, v in read_topic(env, env.topic_bad)]
    assert len(rows) == 2 and consumer.stats.bad == 2
    assert {r["schema"].split("/")[1] for r in rows} == {"loader_parsing_error"}
    assert {r["data"]["processor"]["artifact"] for r in rows} == {"lvp-profiles"}
    # every changed profile was published; the last message per viewer is the stored profile
    last: dict[str, Any] = {}
    for k, v in read_topic(env, env.topic_changes):
        last[k.decode()] = orjson.loads(v)
    assert last == {vid: s["profile"] for vid, s in stored.items()}
    # offsets committed to the end, metrics counted
    assert committed_total(env) == len(pairs) + len(bad)
    text = generate_latest(consumer.metrics.registry).decode()
    plays = float(sum(b.count("play") for b in builders))
    assert f'lvp_profiles_events_applied_total{{event="play"}} {plays}' in text
    assert 'lvp_profiles_bad_messages_total{reason="invalid_tsv"} 1.0' in text
    assert 'lvp_profiles_bad_messages_total{reason="unknown_format"} 1.0' in text
    assert f"lvp_profiles_event_age_seconds_count {float(len(pairs))}" in text
    assert "lvp_profiles_flush_size_count" in text and "lvp_profiles_flush_seconds_bucket" in text


A_EXPECTED = {
    "viewer_id": "viewer-a",
    "status": "ended",
    "app_id": "lvp-demo",
    "media_label": "Big Buck Bunny",
    "position_s": 596,
    "duration_s": 596,
    "percent_progress": 100,
    "ad": None,
    "plays": 3,
    "pauses": 2,
    "seeks": 1,
    "ad_breaks": 2,
    "ads_started": 3,
    "ads_completed": 2,
    "ads_skipped": 1,
    "ads_clicked": 1,
    "buffer_events": 1,
    "errors": 1,
    "play_time_s": 125,
    "paused_time_s": 4,
    "ad_time_s": 23,
    "buffering_time_s": 2.5,
    "last_event_name": "end",
    "device_class": "desktop",
    "last_error": {"code": "3", "message": "decode error, recovered"},
    "playback_rate": 1.5,
    "volume": 40,
    "muted": False,
    "fullscreen": False,
    "quality": "720p",
}


def posts(builder: MediaSessionBuilder, rng: random.Random) -> list[list[tuple[str, str]]]:
    """The builder's events grouped like tracker POSTs (1-6 events, a few seconds apart at most),
    each POST reversed (seen in the wild)."""
    pairs = builder.lines()
    times = [parse_tstamp(r["derived_tstamp"]) for r in builder.rows]
    out: list[list[tuple[str, str]]] = []
    i = 0
    while i < len(pairs):
        n = rng.randint(1, 6)
        j = i + 1
        while j < len(pairs) and j - i < n and times[j] - times[i] <= 8:
            j += 1
        out.append(list(reversed(pairs[i:j])))
        i = j
    return out


def test_reversed_and_duplicated_delivery_gives_the_same_result(env: Settings) -> None:
    rng = random.Random(20241116)
    builders = sessions(int(time.time() * 1000) - 400_000)
    queues = [posts(b, rng) for b in builders]
    delivery: list[tuple[str, str]] = []
    while any(queues):
        q = rng.choice([q for q in queues if q])
        post = q.pop(0)
        delivery += post
        if rng.random() < 0.4:  # a redelivered message right after its POST
            delivery.append(rng.choice(post))
    delivery += delivery[: len(delivery) // 3]  # a whole range redelivered (consumer restart)
    produce(env, delivery)
    run_consumer(env)
    in_order = interleave(builders)
    assert len(delivery) > len(in_order) * 1.3
    assert dump_tables(env) == expected(lines_of(in_order))


def test_real_snowplow_pipeline_output_end_to_end(env: Settings) -> None:
    """73 events written by a real Snowplow pipeline (Micro 2.1.2, JS tracker 4.0.1), keyed by the
    raw domain_userid as a Snowbridge partition key would; identifiers pseudonymized on input."""
    lines = FIXTURE.read_text().splitlines()
    produce(env, [(RAW_DUID, line) for line in lines])
    run_consumer(env, pseudonymize_input=True)
    vid = pseudonymize(RAW_DUID, TEST_KEY.encode())
    stored = dump_tables(env)
    assert list(stored) == [vid]
    assert stored[vid]["profile"] == {**SAMPLE_PROFILE, "viewer_id": vid}
    assert [
        (h["at"], h["prev_status"], h["status"], h["event_name"]) for h in stored[vid]["history"]
    ] == SAMPLE_HISTORY
    published = read_topic(env, env.topic_changes)
    everything = repr(stored) + repr(published)
    assert RAW_DUID not in everything and RAW_NUID not in everything


SAMPLE_PROFILE = {
    "status": "paused",
    "active": None,
    "app_id": None,
    "media_label": "Bugs Bunny",
    "media_session_id": "e3a82b1d-e44e-4bbf-a797-672b4e879af3",
    "position_s": 67.502404,
    "duration_s": 596.474195,
    "percent_progress": 11.3,
    "ad": None,
    "plays": 4,
    "pauses": 4,
    "seeks": 0,
    "ad_breaks": 3,
    "ads_started": 6,
    "ads_completed": 3,
    "ads_skipped": 3,
    "ads_clicked": 1,
    "buffer_events": 0,
    "errors": 0,
    "play_time_s": 67.544,
    "paused_time_s": 23.577,
    "ad_time_s": 23.054,
    "buffering_time_s": 0,
    "startup_time_s": 0,
    "first_seen": "2024-11-16T13:33:21.958Z",
    "last_seen": "2024-11-16T13:35:23.397Z",
    "last_event_id": "dcff5c81-c522-4390-bed7-c4b72bd3231d",
    "last_event_name": "page_ping",
    "events": 73,
    "device_class": "desktop",
    "last_error": None,
    "playback_rate": 1,
    "volume": 100,
    "muted": False,
    "fullscreen": None,
    "quality": None,
}
SAMPLE_PROFILE.pop("active")
SAMPLE_HISTORY = [
    ("2024-11-16T13:33:29.170Z", "idle", "watching", "play"),
    ("2024-11-16T13:33:29.297Z", "watching", "watching_ad", "ad_break_start"),
    ("2024-11-16T13:33:38.339Z", "watching_ad", "watching", "ad_break_end"),
    ("2024-11-16T13:34:08.344Z", "watching", "paused", "pause"),
    ("2024-11-16T13:34:08.347Z", "paused", "watching_ad", "ad_break_start"),
    ("2024-11-16T13:34:17.767Z", "watching_ad", "watching", "ad_break_end"),
    ("2024-11-16T13:34:48.334Z", "watching", "paused", "pause"),
    ("2024-11-16T13:34:48.338Z", "paused", "watching_ad", "ad_break_start"),
    ("2024-11-16T13:34:52.977Z", "watching_ad", "paused", "ad_break_end"),
    ("2024-11-16T13:34:52.983Z", "paused", "watching", "play"),
    ("2024-11-16T13:34:59.777Z", "watching", "paused", "pause"),
]


def many_viewers(prefix: str, n: int, start_ms: int) -> list[MediaSessionBuilder]:
    return [full_session(f"{prefix}-{i:04d}", start_ms + 37 * i) for i in range(n)]


def test_sigkill_mid_stream_then_restart_gives_identical_profiles(
    make_settings: Callable[..., Settings], dynamodb_local: str, output_dir: Path
) -> None:
    env = ready(
        make_settings(
            aws_endpoint_url=dynamodb_local, flush_interval_s=0.1, flush_max_dirty=40, profiles_metrics_port=0
        )
    )
    start = int(time.time() * 1000) - 600_000
    first = interleave(many_viewers("early", 30, start))
    second = interleave(many_viewers("late", 200, start + 5_000))
    cmd = [sys.executable, "-m", "lvp.cli", "--log-level", "WARNING", "profiles"]
    log = open(output_dir / "profiles-sigkill.log", "ab")  # noqa: SIM115
    produce(env, first)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=settings_env(env), stdout=log, stderr=log)
    try:
        wait_for(lambda: committed_total(env) >= len(first), 60, "first commits")
        produce(env, second)
        wait_for(lambda: any(v.startswith("late-") for v in dump_tables(env)), 60, "late viewers flushed")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    committed_at_kill = committed_total(env)
    assert len(first) <= committed_at_kill < len(first) + len(second), "the kill did not land mid-stream"

    restart = subprocess.run(
        [*cmd, "--exit-at-end"], cwd=ROOT, env=settings_env(env), stdout=log, stderr=log, timeout=120
    )
    log.close()
    assert restart.returncode == 0
    assert committed_total(env) == len(first) + len(second)
    assert dump_tables(env) == expected(lines_of(first + second))


def test_two_consumers_split_partitions_and_agree(
    make_settings: Callable[..., Settings], dynamodb_local: str
) -> None:
    """A second member joins while the first holds unflushed state: the first flushes and commits
    before its partitions are revoked, each member loads its viewers from DynamoDB on first sight,
    and the result is the in-order one. (Long flush interval: only revocation and stop flush.)"""
    env = ready(make_settings(aws_endpoint_url=dynamodb_local, flush_interval_s=60, profiles_metrics_port=0))
    pairs = interleave(many_viewers("split", 24, int(time.time() * 1000) - 400_000))
    first, second = pairs[: len(pairs) // 2], pairs[len(pairs) // 2 :]
    produce(env, first)
    with consumer_thread(env) as c1:
        wait_for(lambda: c1.stats.applied == len(first), 60, "first half applied by the only member")
        assert c1.stats.flushes == 0 and committed_total(env) == 0
        with consumer_thread(env) as c2:
            wait_for(
                lambda: (
                    c1.offsets.assigned
                    and c2.offsets.assigned
                    and not (c1.offsets.assigned & c2.offsets.assigned)
                    and len(c1.offsets.assigned | c2.offsets.assigned) == 4
                ),
                60,
                "both members assigned",
            )
            assert c1.stats.flushes >= 1 and committed_total(env) == len(first)  # flushed on revocation
            produce(env, second)
            wait_for(lambda: c1.stats.applied + c2.stats.applied == len(pairs), 60, "second half applied")
            assert c2.stats.applied > 0 and c2.stats.loads > 0  # viewers taken over, state loaded
            assert not set(c1.tracked.states) & set(c2.tracked.states)
    assert committed_total(env) == len(pairs)
    assert dump_tables(env) == expected(lines_of(pairs))


def test_quiet_viewers_are_frozen_and_thaw_unchanged(
    make_settings: Callable[..., Settings], dynamodb_local: str
) -> None:
    """Viewers flushed and then quiet for ``freeze_after_s`` keep only their compressed state; their
    next events thaw them, and the result is the in-order one."""
    env = ready(
        make_settings(
            aws_endpoint_url=dynamodb_local, flush_interval_s=0.1, freeze_after_s=0.1, profiles_metrics_port=0
        )
    )
    pairs = interleave(many_viewers("frozen", 12, int(time.time() * 1000) - 400_000))
    first, second = pairs[: len(pairs) // 2], pairs[len(pairs) // 2 :]
    produce(env, first)
    with consumer_thread(env) as c:  # LVP_FREEZE_AFTER_S=0.1
        wait_for(lambda: c.stats.applied == len(first), 60, "first half applied")
        viewers = list(c.tracked.states)
        wait_for(lambda: all(c.tracked.states[v].frozen for v in viewers), 30, "quiet viewers frozen")
        produce(env, second)
        wait_for(lambda: c.stats.applied == len(pairs), 60, "second half applied")
        assert c.stats.frozen >= len(viewers)
        wait_for(lambda: committed_total(env) == len(pairs), 60, "everything flushed and committed")
    assert dump_tables(env) == expected(lines_of(pairs))


@pytest.mark.parametrize("seconds", [0.0, -1.0])
def test_freeze_after_must_be_positive(make_settings: Callable[..., Settings], seconds: float) -> None:
    with pytest.raises(ConfigError, match="LVP_FREEZE_AFTER_S must be > 0"):
        ProfilesConsumer(make_settings(freeze_after_s=seconds))


def test_sigterm_flushes_and_commits_before_exit(
    make_settings: Callable[..., Settings], dynamodb_local: str, output_dir: Path
) -> None:
    port = free_port()
    env = ready(
        make_settings(aws_endpoint_url=dynamodb_local, flush_interval_s=60, profiles_metrics_port=port)
    )
    pairs = interleave(many_viewers("term", 5, int(time.time() * 1000) - 400_000))
    produce(env, pairs)
    log = open(output_dir / "profiles-sigterm.log", "ab")  # noqa: SIM115
    cmd = [sys.executable, "-m", "lvp.cli", "--log-level", "WARNING", "profiles"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=settings_env(env), stdout=log, stderr=log)

    def applied() -> float:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return 0.0
        return sum(
            float(ln.split()[-1])
            for ln in text.splitlines()
            if ln.startswith("lvp_profiles_events_applied_total{")
        )

    try:
        wait_for(lambda: applied() == len(pairs), 60, "all events applied")
        assert dump_tables(env) == {} and committed_total(env) == 0  # nothing flushed yet
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert committed_total(env) == len(pairs)
    assert dump_tables(env) == expected(lines_of(pairs))


def test_dynamodb_outage_stops_commits_and_loses_nothing(
    make_settings: Callable[..., Settings], dynamodb_local: str
) -> None:
    proxy = TcpProxy("127.0.0.1", int(dynamodb_local.rsplit(":", 1)[1]))
    try:
        port = free_port()
        env = ready(
            make_settings(aws_endpoint_url=proxy.url, flush_interval_s=0.1, profiles_metrics_port=port)
        )
        start = int(time.time() * 1000) - 400_000
        known = interleave(many_viewers("outage", 6, start))
        half = len(known) // 2
        before = known[:half]
        # during the outage: the known viewers go on, and new viewers whose state cannot be loaded
        during = known[half:]
        newcomers = interleave(many_viewers("newcomer", 3, start + 60_000))
        all_pairs = before + during + newcomers
        produce(env, before)
        with consumer_thread(env) as c:
            wait_for(
                lambda: sum(c.offsets.committed.values()) == len(before), 60, "commits before the outage"
            )
            proxy.cut()
            produce(env, during + newcomers)
            wait_for(
                lambda: (
                    c.stats.applied == len(before) + len(during)
                    and c.stats.flush_failures >= 2
                    and c.stats.load_failures >= 1
                ),
                60,
                "failing flushes and loads",
            )
            assert committed_total(env) == len(before)  # nothing committed meanwhile
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            retries = [
                ln for ln in metrics.splitlines() if ln.startswith("lvp_profiles_dynamodb_retries_total ")
            ]
            assert retries and float(retries[0].split()[1]) > 0
            assert 'lvp_profiles_consumer_lag{partition="' in metrics
            assert "lvp_profiles_tracked_viewers 6.0" in metrics  # the newcomers wait for DynamoDB
            proxy.restore()
            wait_for(lambda: committed_total(env) == len(all_pairs), 60, "commits after recovery")
            assert c.stats.applied == len(all_pairs)
        assert dump_tables(env) == expected(lines_of(all_pairs))
    finally:
        proxy.close()
