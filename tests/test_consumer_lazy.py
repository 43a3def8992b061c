"""Lazy DynamoDB writes and batched touches (docs/lazy-writes.md), over the real Tansu broker and
DynamoDB Local / moto server.

A ping or progress event that changes only touch fields (position, last_seen, play time) costs
neither a DynamoDB write nor a publication of its own; a new viewer or a status change is written
at the next flush, every significant change is published at once; the offsets commit only up to what DynamoDB holds, so a crash at any
moment replays what was not written and ends with the exact profiles."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from enriched_factory import MediaSessionBuilder, interleave
from support.profiles import (
    committed_offsets,
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

from lvp.changes import TOUCH_KEY_PREFIX, parse_message, partition_for
from lvp.config import ConfigError, Settings
from lvp.dynamo import create_tables
from lvp.kafka import create_topics
from profiles.consumer import ProfilesConsumer
from profiles.erasure import ErasureReaderError
from profiles.store import ProfileStore

ROOT = Path(__file__).resolve().parent.parent


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
            touch_interval_s=0.2,
            profile_write_interval_s=4.0,
            active_timeout_s=60.0,
            profiles_metrics_port=0,
        )
    )


def stored_events(settings: Settings, vid: str) -> int | None:
    store = ProfileStore(settings, fast_calls=False)
    try:
        item = store.get_profile(vid)
    finally:
        store.close()
    return None if item is None else int(item["events"])


def new_lines(b: MediaSessionBuilder, before: int) -> list[tuple[str, str]]:
    return b.lines()[before:]


def test_pings_are_written_at_the_cadence_and_status_changes_at_once(env: Settings) -> None:
    # (collector times near now: a viewer whose last event is older than the active timeout
    # counts as quiet once the consumer has read everything, and is written at once)
    start = int(time.time() * 1000) - 45_000
    b = MediaSessionBuilder("lazy-1", start)
    b.ready().play()
    produce(env, b.lines())
    with consumer_thread(env) as consumer:
        wait_for(lambda: stored_events(env, "lazy-1") == 2, what="the play written at once")
        assert consumer.stats.written["change"] >= 1
        wait_for(lambda: committed_total(env) == 2, what="the play committed")
        committed_after_play = 2
        n = len(b.lines())
        for _ in range(4):
            b.wait(10).ping()
        t_pings = time.monotonic()
        produce(env, new_lines(b, n))
        wait_for(lambda: consumer.stats.touches >= 1, what="the pings published as touches")
        # the pings are applied and published, but not written, and the commit waits for them
        assert consumer.stats.applied == 6
        assert stored_events(env, "lazy-1") == 2
        assert committed_total(env) == committed_after_play
        writes_before = dict(consumer.stats.written)
        # the cadence writes them, and the commit follows
        wait_for(lambda: stored_events(env, "lazy-1") == 6, timeout=30, what="the cadence write")
        assert time.monotonic() - t_pings >= env.profile_write_interval_s - 0.5
        assert consumer.stats.written["cadence"] == writes_before["cadence"] + 1
        wait_for(lambda: committed_total(env) == committed_after_play + 4, what="commit after the write")
        # a pause is a status change: written within a flush, not at the cadence
        n = len(b.lines())
        b.wait(5).pause()
        t_pause = time.monotonic()
        produce(env, new_lines(b, n))
        wait_for(lambda: stored_events(env, "lazy-1") == 7, what="the pause written at once")
        assert time.monotonic() - t_pause < env.profile_write_interval_s
        assert consumer.stats.written["change"] == writes_before["change"] + 1
    assert dump_tables(env) == expected([line for _k, line in b.lines()])


def test_status_changes_within_the_delay_cost_one_write(env: Settings) -> None:
    """With LVP_STATUS_WRITE_DELAY_S, a new viewer or a status change is written that long after
    it, together with the status changes that came meanwhile: an ad break's start and end are
    one profile write (and both history entries); the live view has each change at once."""
    delay = 5.0  # (room for a slow machine between the two publications and the check below)
    env = dataclasses.replace(env, status_write_delay_s=delay, profile_write_interval_s=60.0)
    b = MediaSessionBuilder("delay-1", int(time.time() * 1000) - 30_000)
    b.ready().play()
    t_new = time.monotonic()
    produce(env, b.lines())
    with consumer_thread(env) as consumer:
        wait_for(lambda: stored_events(env, "delay-1") == 2, timeout=30, what="the new viewer written")
        assert time.monotonic() - t_new >= delay
        assert consumer.stats.written["change"] == 1  # ready and play: one write
        published = consumer.stats.published
        n = len(b.lines())
        b.wait(2).ad_break_start()
        t_break = time.monotonic()
        produce(env, new_lines(b, n))
        wait_for(lambda: consumer.stats.published > published, what="the ad break on the live view")
        n = len(b.lines())
        b.wait(1).ad_break_end()
        produce(env, new_lines(b, n))
        wait_for(lambda: consumer.stats.published > published + 1, what="its end on the live view")
        assert stored_events(env, "delay-1") == 2  # neither is in DynamoDB yet
        wait_for(lambda: stored_events(env, "delay-1") == 4, timeout=30, what="the ad break written")
        assert time.monotonic() - t_break >= delay
        assert consumer.stats.written["change"] == 2  # the break's start and end: one write
    tables = dump_tables(env)
    assert [h["status"] for h in tables["delay-1"]["history"]] == ["watching", "watching_ad", "watching"]
    assert tables == expected([line for _k, line in b.lines()])


def test_a_viewer_gone_quiet_is_written_without_waiting_for_the_cadence(
    make_settings: Callable[..., Settings], dynamodb_local: str
) -> None:
    env = ready(
        make_settings(
            aws_endpoint_url=dynamodb_local,
            flush_interval_s=0.2,
            publish_interval_s=0.05,
            touch_interval_s=0.2,
            profile_write_interval_s=3600.0,
            active_timeout_s=2.0,
            profiles_metrics_port=0,
        )
    )
    b = MediaSessionBuilder("quiet-1", int(time.time() * 1000) - 60_000)
    b.ready().play()
    produce(env, b.lines())
    with consumer_thread(env) as consumer:
        wait_for(lambda: stored_events(env, "quiet-1") == 2, what="the play written")
        n = len(b.lines())
        b.wait(10).ping()
        produce(env, new_lines(b, n))
        wait_for(lambda: stored_events(env, "quiet-1") == 3, timeout=20, what="the quiet write")
        assert consumer.stats.written["quiet"] == 1 and consumer.stats.written["cadence"] == 0


def test_touches_share_one_message_per_partition_and_profiles_keep_their_partition(env: Settings) -> None:
    start = int(time.time() * 1000) - 300_000
    builders = [MediaSessionBuilder(f"touch-{i}", start + i * 10) for i in range(30)]
    for b in builders:
        b.ready().play()
    produce(env, interleave(builders))
    with consumer_thread(env) as consumer:
        wait_for(lambda: consumer.stats.published >= 30, what="30 profiles published")
        published = consumer.stats.published
        counts = [len(b.lines()) for b in builders]
        for b in builders:
            b.wait(30).ping().wait(30).ping()
        produce(env, [kv for b, n in zip(builders, counts, strict=True) for kv in new_lines(b, n)])
        wait_for(lambda: consumer.stats.applied == 30 * 4, what="every ping applied")
        wait_for(lambda: consumer.stats.touches >= 30, what="every viewer touched")
        assert consumer.stats.published == published  # no profile message for a ping
    parts = 4
    touches: dict[str, dict[str, object]] = {}
    profiles = 0
    for p, key, value in read_topic(env, env.topic_changes, partitions=True):
        change = parse_message(key, value)
        assert change is not None
        if change.kind == "touches":
            assert key == TOUCH_KEY_PREFIX + str(p).encode()
            assert change.touches is not None
            for vid, patch in change.touches.items():
                assert partition_for(vid.encode(), parts) == p
                touches[vid] = patch
        else:
            assert change.kind == "profile" and change.viewer_id is not None
            assert partition_for(key, parts) == p
            profiles += 1
    assert profiles == 30
    final = expected([line for b in builders for _k, line in b.lines()])
    assert set(touches) == set(final)
    for vid, patch in touches.items():
        for name, value in patch.items():
            assert final[vid]["profile"][name] == value, (vid, name)


@pytest.mark.parametrize("status_delay", [0.0, 20.0])
def test_sigkill_with_unwritten_pings_ends_with_the_exact_profiles(
    make_settings: Callable[..., Settings], dynamodb_local: str, status_delay: float
) -> None:
    """The consumer holds pings of every viewer unwritten (a 300 s cadence) when it is killed —
    and, with a status write delay, the pauses too; its successor replays them from the last
    commit and writes the exact profiles."""
    env = ready(
        make_settings(
            aws_endpoint_url=dynamodb_local,
            flush_interval_s=0.2,
            publish_interval_s=0.05,
            touch_interval_s=0.2,
            profile_write_interval_s=300.0,
            status_write_delay_s=status_delay,
            profiles_metrics_port=0,
        )
    )
    start = int(time.time() * 1000) - 215_000  # the last pings are recent: not quiet yet
    builders = [MediaSessionBuilder(f"kill-{i}", start + i * 100) for i in range(20)]
    for b in builders:
        b.ready().play()
    first = interleave(builders)
    counts = [len(b.lines()) for b in builders]
    for i, b in enumerate(builders):
        for _ in range(6):
            b.wait(30).ping()
        if i % 3 == 0:
            b.pause().wait(20).ping()
    rest = [kv for b, n in zip(builders, counts, strict=True) for kv in new_lines(b, n)]
    pairs = [*first, *rest]
    produce(env, first)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lvp.cli", "--log-level", "WARNING", "profiles", "--metrics-port", "0"],
        cwd=ROOT,
        env=settings_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # every play is written (a status change) and committed
        wait_for(
            lambda: all(stored_events(env, f"kill-{i}") == 2 for i in range(20)),
            timeout=90,
            what="every viewer's play written",
        )
        wait_for(lambda: committed_total(env) == len(first), what="the plays committed")
        produce(env, rest)

        def touched() -> bool:
            messages = read_topic(env, env.topic_changes)
            return any(k is not None and k.startswith(TOUCH_KEY_PREFIX) for k, _v in messages)

        wait_for(touched, timeout=60, what="the pings published as touches")
        time.sleep(0.5)
        # the pings are not written, and they hold the commit back
        assert committed_total(env) < len(pairs)
        if status_delay:  # the pauses wait out the delay: killed before any is written
            assert all(stored_events(env, f"kill-{i}") == 2 for i in range(20))
        else:  # the pauses are written at once
            wait_for(
                lambda: all((stored_events(env, f"kill-{i}") or 0) >= 9 for i in range(0, 20, 3)),
                what="the pauses written at once",
            )
            assert all(stored_events(env, f"kill-{i}") == 2 for i in range(20) if i % 3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    consumer = run_consumer(env)
    assert consumer.stats.written["final"] >= 1
    assert dump_tables(env) == expected([line for _k, line in pairs])
    assert committed_total(env) == len(pairs)


def test_the_consumer_refuses_to_run_without_an_erasure_reader(
    make_settings: Callable[..., Settings], dynamodb_local: str
) -> None:
    env = make_settings(aws_endpoint_url=dynamodb_local, profiles_metrics_port=0)
    create_tables(env)
    missing = env.with_(topic_changes=f"missing-{env.topic_changes}")
    consumer = ProfilesConsumer(missing)
    with pytest.raises(ErasureReaderError, match="cannot read the changes topic"):
        consumer.run()
    assert consumer.metrics.erasure_reader_errors._value.get() == 1
    # the command says why and exits 1
    proc = subprocess.run(
        [sys.executable, "-m", "lvp.cli", "profiles", "--metrics-port", "0"],
        cwd=ROOT,
        env=settings_env(missing),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "cannot read the changes topic" in proc.stderr


def test_an_unreadable_stored_state_stops_its_partition_and_is_never_overwritten(
    env: Settings,
) -> None:
    start = int(time.time() * 1000) - 120_000
    bad = MediaSessionBuilder("unreadable-1", start)
    bad.ready().play()
    good = [MediaSessionBuilder(f"other-{i}", start + i) for i in range(12)]
    for b in good:
        b.ready().play().wait(30).ping()
    parts = 4
    bad_partition = partition_for(b"unreadable-1", parts)
    item = {
        "viewer_id": {"S": "unreadable-1"},
        "status": {"S": "paused"},
        "events": {"N": "41"},
        "state": {"S": "999:a state from a future version"},
    }
    store = ProfileStore(env, fast_calls=False)
    store.client.put_item(TableName=env.table_profiles, Item=item)
    produce(env, [*bad.lines(), *interleave(good)])
    with consumer_thread(env) as consumer:
        wait_for(lambda: consumer.stats.unreadable == 1, what="the unreadable state seen")
        others = [b.viewer_id for b in good if partition_for(b.viewer_id.encode(), parts) != bad_partition]
        wait_for(
            lambda: all(stored_events(env, vid) == 3 for vid in others),
            timeout=30,
            what="the other partitions' viewers written",
        )
        time.sleep(1.0)
        assert consumer.metrics.stopped_partitions._value.get() == 1
        # its partition commits nothing past the viewer's first event (offset 0): nothing is lost
        assert committed_offsets(env).get(bad_partition, -1) <= 0
    key = {"viewer_id": {"S": "unreadable-1"}}
    after = store.client.get_item(TableName=env.table_profiles, Key=key, ConsistentRead=True)["Item"]
    store.close()
    assert after == item  # untouched
    assert consumer.metrics.unreadable_states._value.get() == 1


def test_write_interval_must_be_positive(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="LVP_PROFILE_WRITE_INTERVAL_S"):
        ProfilesConsumer(make_settings(profile_write_interval_s=0.0))


def test_health_fails_while_the_poll_loop_stalls(
    make_settings: Callable[..., Settings], dynamodb_local: str
) -> None:
    import threading

    import httpx

    from lvp.local.broker import free_port

    env = ready(make_settings(aws_endpoint_url=dynamodb_local, profiles_metrics_port=free_port()))
    with consumer_thread(env, stall_after_s=1.0) as consumer:
        url = f"http://127.0.0.1:{env.profiles_metrics_port}"
        wait_for(lambda: httpx.get(f"{url}/health").status_code == 200, what="healthy")
        assert "lvp_profiles_writes_total" in httpx.get(f"{url}/metrics").text
        release = threading.Event()
        update_lag = consumer._update_lag

        def hang() -> None:  # one step of the loop hangs (as a blocked call would)
            release.wait(30)
            update_lag()

        consumer._update_lag = hang  # type: ignore[method-assign]
        r = wait_for(lambda: (x := httpx.get(f"{url}/health")).status_code == 503 and x, what="unhealthy")
        assert "poll loop stalled" in r.text
        consumer._update_lag = update_lag  # type: ignore[method-assign]
        release.set()
        wait_for(lambda: httpx.get(f"{url}/health").status_code == 200, what="healthy again")
