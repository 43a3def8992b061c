from __future__ import annotations

import pytest
from collector_server import unique
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from lvp.config import Settings
from lvp.kafka import consumer_config, create_topics, end_offsets, producer_config


def test_create_topics_is_idempotent(make_settings) -> None:  # type: ignore[no-untyped-def]
    s: Settings = make_settings(topic_partitions=3)
    first = create_topics(s)
    assert set(first.values()) == {"created"}
    assert set(create_topics(s).values()) == {"exists"}
    meta = AdminClient(s.kafka_config()).list_topics(timeout=10)
    assert len(meta.topics[s.topic_good].partitions) == 3
    assert s.topic_changes in meta.topics


def test_keyed_roundtrip_through_real_broker(lvp_settings: Settings) -> None:
    p = Producer(producer_config(lvp_settings))
    for i in range(20):
        p.produce(lvp_settings.topic_good, key=f"v{i % 3}".encode(), value=f"m{i}".encode())
    assert p.flush(10) == 0
    c = Consumer(consumer_config(lvp_settings))
    c.subscribe([lvp_settings.topic_good])
    got = []
    for _ in range(200):
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append((m.key().decode(), m.value().decode()))
        if len(got) == 20:
            break
    c.close()
    assert sorted(v for _, v in got) == sorted(f"m{i}" for i in range(20))
    # per-key order is kept
    for key in ("v0", "v1", "v2"):
        seq = [int(v[1:]) for k, v in got if k == key]
        assert seq == sorted(seq)


def test_end_offsets_are_where_the_next_message_goes(make_settings) -> None:  # type: ignore[no-untyped-def]
    """Several record batches per partition (each flushed on its own): the end is past the last
    message of the last batch (Tansu's ListOffsets says the last batch's first offset + 1)."""
    s: Settings = make_settings(topic_partitions=3)
    create_topics(s)
    assert end_offsets(s.kafka_config(), s.topic_good) == {0: 0, 1: 0, 2: 0}
    p = Producer(producer_config(s, **{"linger.ms": 0}))
    sent = {0: 0, 1: 0, 2: 0}
    for size in (5, 1, 7, 3):  # one batch per partition per round
        for part in sent:
            for i in range(size + part):
                p.produce(s.topic_good, value=f"m{i}".encode(), partition=part)
                sent[part] += 1
        assert p.flush(10) == 0
    assert end_offsets(s.kafka_config(), s.topic_good) == sent
    # the offsets a consumer reads agree: the last message of each partition is at end - 1
    c = Consumer(consumer_config(s, group_id=unique("end-check"), **{"enable.partition.eof": True}))
    c.assign([TopicPartition(s.topic_good, part, 0) for part in sent])
    last: dict[int, int] = {}
    done: set[int] = set()
    for _ in range(200):
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error() is not None:
            if m.error().code() == KafkaError._PARTITION_EOF:
                done.add(m.partition())
                if done == set(sent):
                    break
            continue
        last[m.partition()] = m.offset()
    c.close()
    assert {part: off + 1 for part, off in last.items()} == sent


def test_end_offsets_of_a_missing_topic_is_an_error(make_settings) -> None:  # type: ignore[no-untyped-def]
    s: Settings = make_settings()
    with pytest.raises(KafkaException) as raised:
        end_offsets(s.kafka_config(), unique("no-such-topic"), timeout=5)
    assert raised.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def _topic_config(s: Settings, topic: str) -> dict[str, str]:
    admin = AdminClient(s.kafka_config())  # alive until the answer is in
    (fut,) = admin.describe_configs([ConfigResource("TOPIC", topic)]).values()
    return {k: v.value for k, v in fut.result(timeout=10).items()}


def test_changes_topic_is_compacted_and_expires_after_the_retention(make_settings) -> None:  # type: ignore[no-untyped-def]
    s: Settings = make_settings(retention_days=7)
    create_topics(s)
    config = _topic_config(s, s.topic_changes)
    assert config["cleanup.policy"] == "compact,delete"
    assert config["retention.ms"] == str(7 * 86_400_000)
    # a topic created compact-only (by an older version) gets the retention on the next run
    old = make_settings(retention_days=3)
    admin = AdminClient(old.kafka_config())
    topic = NewTopic(
        old.topic_changes, num_partitions=1, replication_factor=1, config={"cleanup.policy": "compact"}
    )
    admin.create_topics([topic])[old.topic_changes].result(timeout=15)
    assert _topic_config(old, old.topic_changes)["cleanup.policy"] == "compact"
    assert create_topics(old)[old.topic_changes] == "exists"
    config = _topic_config(old, old.topic_changes)
    assert (config["cleanup.policy"], config["retention.ms"]) == ("compact,delete", str(3 * 86_400_000))
