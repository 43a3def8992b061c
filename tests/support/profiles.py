"""Helpers for the profiles tests: produce enriched lines, run a consumer in a thread, read topics,
and compute what an in-order run of the engine gives (the reference every delivery must match)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, overload

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from enriched_factory import MediaSessionBuilder

from lvp.config import SETTINGS, Settings
from lvp.dynamo import dynamodb_client
from lvp.kafka import producer_config
from lvp.profile_codec import item_to_history, item_to_profile
from lvp.tables import is_erasure_marker
from profiles.consumer import ProfilesConsumer
from profiles.engine import ViewerState
from profiles.inputs import InputDecoder
from profiles.store import ProfileStore

#: Tansu joins a group in about half the session timeout: keep test joins short.
FAST_GROUP = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 300}


def produce(
    settings: Settings, pairs: Iterable[tuple[str | None, str | bytes]], topic: str | None = None
) -> int:
    producer = Producer(producer_config(settings))
    n = 0
    for key, value in pairs:
        producer.produce(
            topic or settings.topic_good,
            key=key.encode() if key is not None else None,
            value=value.encode() if isinstance(value, str) else value,
        )
        n += 1
        if n % 5000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0, "messages not delivered"
    return n


def run_consumer(settings: Settings, timeout: float = 90, **kwargs: Any) -> ProfilesConsumer:
    """Run a consumer until every partition is consumed, flushed and committed."""
    kwargs.setdefault("consumer_overrides", FAST_GROUP)
    consumer = ProfilesConsumer(settings, exit_at_end=True, **kwargs)
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(consumer.run()), daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        consumer.stop()
        t.join(30)
        raise AssertionError(f"consumer did not reach the end within {timeout}s: {consumer.stats}")
    assert result == [0], f"consumer exited with {result}"
    return consumer


@contextmanager
def consumer_thread(settings: Settings, **kwargs: Any) -> Iterator[ProfilesConsumer]:
    """A consumer running in the background until the block ends (then stopped and joined)."""
    kwargs.setdefault("consumer_overrides", FAST_GROUP)
    consumer = ProfilesConsumer(settings, **kwargs)
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(consumer.run()), daemon=True)
    t.start()
    try:
        yield consumer
    finally:
        consumer.stop()
        t.join(60)
        assert not t.is_alive(), "consumer did not stop"


def wait_for(predicate: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@overload
def read_topic(
    settings: Settings, topic: str, timeout: float = 20, *, partitions: Literal[False] = False
) -> list[tuple[Any, Any]]: ...
@overload
def read_topic(
    settings: Settings, topic: str, timeout: float = 20, *, partitions: Literal[True]
) -> list[tuple[int, Any, Any]]: ...
def read_topic(
    settings: Settings, topic: str, timeout: float = 20, *, partitions: bool = False
) -> list[tuple[Any, Any]] | list[tuple[int, Any, Any]]:
    """Every message of ``topic`` (all partitions, from the start), as (key, value), or with
    ``partitions`` as (partition, key, value). Reads up to partition EOF: Tansu's ListOffsets
    high watermark cannot be trusted (real-components.md)."""
    c = Consumer(
        settings.kafka_config(
            **{"group.id": "reader", "enable.auto.commit": False, "enable.partition.eof": True}
        )
    )
    meta = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    out: list[tuple[int, Any, Any]] = []
    done: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(done) < len(meta.partitions):
        assert time.monotonic() < deadline, f"{topic}: no EOF on partitions {set(meta.partitions) - done}"
        m = c.poll(0.2)
        if m is None:
            continue
        err = m.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                done.add(m.partition())  # type: ignore[arg-type]
            continue
        out.append((m.partition(), m.key(), m.value()))  # type: ignore[arg-type]
    c.close()
    if partitions:
        return out
    return [(key, value) for _p, key, value in out]


def expected(
    lines: Iterable[str | bytes], pseudonymize: Callable[[str], str] | None = None
) -> dict[str, Any]:
    """viewer id -> {"profile": ..., "history": [...]} of an in-order run of the engine."""
    decoder = InputDecoder(pseudonymize)
    events = [decoder.decode(line.encode() if isinstance(line, str) else line) for line in lines]
    events.sort(key=lambda e: e.order_key)
    states: dict[str, ViewerState] = {}
    for ev in events:
        states.setdefault(ev.viewer_id, ViewerState.new(ev.viewer_id)).apply(ev)
    out = {}
    for vid, st in states.items():
        puts, deletes = st.history_changes()
        assert not deletes
        out[vid] = {"profile": st.profile(), "history": [h.item() for h in puts]}
    return out


def stored(store: ProfileStore, viewer_ids: Iterable[str]) -> dict[str, Any]:
    return {
        vid: {"profile": store.get_profile(vid), "history": list(store.history(vid))} for vid in viewer_ids
    }


def committed_offsets(settings: Settings, partitions: int | None = None) -> dict[int, int]:
    """The group's committed offsets on the good topic (partition -> offset, -1001 = none)."""
    n = partitions or settings.topic_partitions
    c = Consumer(settings.kafka_config(**{"group.id": settings.consumer_group, "enable.auto.commit": False}))
    try:
        tps = c.committed([TopicPartition(settings.topic_good, p) for p in range(n)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def dump_tables(settings: Settings) -> dict[str, Any]:
    """viewer id -> {"profile", "history"} of everything stored (test-only scans)."""

    client = dynamodb_client(settings)
    out: dict[str, Any] = {}
    for page in client.get_paginator("scan").paginate(TableName=settings.table_profiles, ConsistentRead=True):
        for item in page["Items"]:
            if not is_erasure_marker(item):  # (what erasure leaves is no profile)
                out[item["viewer_id"]["S"]] = {"profile": item_to_profile(item), "history": []}
    for page in client.get_paginator("scan").paginate(TableName=settings.table_history, ConsistentRead=True):
        for item in page["Items"]:
            out.setdefault(item["viewer_id"]["S"], {"profile": None, "history": []})["history"].append(
                item_to_history(item)
            )
    for v in out.values():
        v["history"].sort(key=lambda h: h["seq"])
    return out


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment variables that reproduce ``settings`` in a subprocess."""

    env = dict(os.environ)
    for f in SETTINGS:
        v = getattr(settings, f.name)
        env[f.metadata["env"]] = ("1" if v else "0") if isinstance(v, bool) else str(v)
    env.update({"KAFKA_SESSION_TIMEOUT_MS": "2000", "KAFKA_HEARTBEAT_INTERVAL_MS": "300"})
    env.update(extra)
    return env


def committed_total(settings: Settings) -> int:
    """Sum of the group's committed offsets (partitions without a commit count 0)."""
    return sum(o for o in committed_offsets(settings).values() if o > 0)


def pipeline_settings(make_settings: Callable[..., Settings], dynamodb: str, token: str) -> Settings:
    """Settings for a whole-pipeline test (collector, consumer, viewer API), topics and tables made."""
    from lvp.dynamo import create_tables
    from lvp.kafka import create_topics

    s = make_settings(
        aws_endpoint_url=dynamodb, api_tokens=token, flush_interval_s=0.2, profiles_metrics_port=0
    )
    create_topics(s)
    create_tables(s)
    return s


@contextmanager
def pipeline(settings: Settings) -> Iterator[dict[str, Any]]:
    """The collector, a profiles consumer and the viewer API, running: ``{"collector":
    RunningCollector, "consumer": ProfilesConsumer, "viewer": URL}``."""
    from collector_server import serve_collector

    from support.viewer import serve_in_thread
    from viewer.app import create_app as create_viewer

    with (
        serve_collector(settings) as collector,
        consumer_thread(settings) as consumer,
        serve_in_thread(create_viewer(settings, push_interval_s=0.1)) as viewer_url,
    ):
        yield {"collector": collector, "consumer": consumer, "viewer": viewer_url}


def engine_for(builder: MediaSessionBuilder) -> ViewerState:
    """The engine state of ``builder``'s viewer after all its events (decoded as the consumer does)."""
    decoder = InputDecoder()
    st = ViewerState.new(builder.viewer_id)
    for _key, line in builder.lines():
        st.apply(decoder.decode(line.encode()))
    return st
