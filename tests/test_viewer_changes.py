"""The changes-topic reader: every partition from the beginning, no consumer group."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson
from confluent_kafka import Producer

from lvp.config import Settings
from lvp.kafka import producer_config
from viewer.changes import Change, ChangesReader, parse_change
from viewer.testing import make_profile


def test_parse_change() -> None:
    assert parse_change(b"v1", None) == ("v1", None)
    assert parse_change(b"v1", b'{"status": "paused"}') == ("v1", {"status": "paused"})
    assert parse_change(None, b'{"viewer_id": "v2"}') == ("v2", {"viewer_id": "v2"})
    for key, value in ((b"v", b"not json"), (b"v", b"[1, 2]"), (None, b"{}"), (None, None), (b"\xff", b"{}")):
        assert parse_change(key, value) is None


async def test_reads_every_partition_and_reports_loaded(lvp_settings: Settings) -> None:
    settings = lvp_settings
    producer = Producer(producer_config(settings))
    expected: dict[str, object] = {}
    for i in range(40):
        vid = f"viewer-{i}"
        profile = make_profile(vid, events=i)
        expected[vid] = profile
        producer.produce(
            settings.topic_changes, key=vid.encode(), value=orjson.dumps(profile), partition=i % 4
        )
    producer.produce(settings.topic_changes, key=b"viewer-3", value=None, partition=3)  # erased
    expected["viewer-3"] = None
    producer.produce(settings.topic_changes, key=b"junk", value=b"\x00not json", partition=1)
    assert producer.flush(15) == 0

    seen: dict[str, object] = {}
    bad_total = 0
    loaded = asyncio.Event()

    def on_batch(batch: list[Change], bad: int) -> None:
        nonlocal bad_total
        bad_total += bad
        for vid, profile in batch:
            seen[vid] = profile

    reader = ChangesReader(settings, on_batch, loaded.set)
    reader.start(asyncio.get_running_loop())
    try:
        await asyncio.wait_for(loaded.wait(), 30)
        assert seen == expected  # everything written before start is in once loaded
        assert bad_total == 1
        # and it keeps following the topic
        producer.produce(
            settings.topic_changes, key=b"late", value=orjson.dumps(make_profile("late")), partition=2
        )
        producer.flush(15)
        deadline = time.monotonic() + 15
        while "late" not in seen:
            assert time.monotonic() < deadline, "late change never arrived"
            await asyncio.sleep(0.05)
    finally:
        await asyncio.to_thread(reader.stop)
    assert reader.error is None


async def test_waits_for_a_topic_created_later(make_settings: Callable[..., Settings]) -> None:
    from lvp.kafka import create_topics

    settings = make_settings()
    loaded = asyncio.Event()
    seen: list[str] = []
    reader = ChangesReader(settings, lambda batch, bad: seen.extend(v for v, _ in batch), loaded.set)
    reader.start(asyncio.get_running_loop())
    try:
        await asyncio.sleep(0)  # the reader starts with no topic to read
        await asyncio.to_thread(create_topics, settings)
        producer = Producer(producer_config(settings))
        producer.produce(settings.topic_changes, key=b"first", value=orjson.dumps(make_profile("first")))
        producer.flush(15)
        await asyncio.wait_for(loaded.wait(), 30)
        deadline = time.monotonic() + 15
        while "first" not in seen:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await asyncio.to_thread(reader.stop)
    assert reader.error is None
