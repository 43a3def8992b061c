from __future__ import annotations

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from lvp.config import Settings
from lvp.kafka import consumer_config, create_topics, producer_config


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
