"""The changes-topic reader: every partition from the beginning, no consumer group."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson
from confluent_kafka import Producer
from support.viewer import make_profile

from lvp.changes import TOUCH_FIELDS, TOUCH_KEY_PREFIX, encode_touches
from lvp.changes import parse_message as shared_parse
from lvp.config import Settings
from lvp.kafka import producer_config
from viewer.changes import Change, ChangesReader, parse_message


def test_reader_decodes_with_the_shared_parser() -> None:
    # the reader's decoder is lvp.changes.parse_message: profiles, tombstones and touches
    assert parse_message is shared_parse
    assert parse_message(b"v1", None) == Change("erasure", viewer_id="v1")
    assert parse_message(None, b'{"viewer_id": "v2"}') == Change("profile", "v2", {"viewer_id": "v2"})
    touches = parse_message(TOUCH_KEY_PREFIX + b"0", encode_touches([["v1", *range(len(TOUCH_FIELDS))]]))
    assert touches is not None and touches.kind == "touches" and touches.touches is not None
    assert touches.touches["v1"]["position_s"] == TOUCH_FIELDS.index("position_s")


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
    touch_row = ["viewer-5", *(f"t-{f}" for f in TOUCH_FIELDS)]
    producer.produce(
        settings.topic_changes, key=TOUCH_KEY_PREFIX + b"1", value=encode_touches([touch_row]), partition=1
    )
    assert producer.flush(15) == 0

    seen: dict[str, object] = {}
    bad_total = 0
    loaded = asyncio.Event()

    touches: list[dict[str, dict[str, object]]] = []

    def on_batch(batch: list[Change], bad: int) -> None:
        nonlocal bad_total
        bad_total += bad
        for change in batch:
            if change.kind == "touches":
                assert change.touches is not None
                touches.append(change.touches)
            else:
                assert change.viewer_id is not None
                seen[change.viewer_id] = change.profile

    reader = ChangesReader(settings, on_batch, loaded.set)
    reader.start(asyncio.get_running_loop())
    try:
        await asyncio.wait_for(loaded.wait(), 30)
        assert seen == expected  # everything written before start is in once loaded
        assert bad_total == 1
        assert touches == [{"viewer-5": {f: f"t-{f}" for f in TOUCH_FIELDS}}]  # all three kinds
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
    reader = ChangesReader(
        settings, lambda batch, bad: seen.extend(c.viewer_id or "" for c in batch), loaded.set
    )
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
