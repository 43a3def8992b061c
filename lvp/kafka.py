"""Kafka client settings and topic administration (librdkafka via confluent-kafka).

Settings map one to one onto librdkafka properties: :meth:`lvp.config.Settings.kafka_config`
gives the connection (bootstrap servers plus ``KAFKA_*`` pass-through, e.g. SASL/OAUTHBEARER for
MSK); these helpers add what each role needs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from lvp.config import Settings
from lvp.errors import Unavailable

# The profiles consumer and the live view join groups often in dev; Tansu's join takes about
# half the session timeout, so keep it short (override with KAFKA_SESSION_TIMEOUT_MS).
GROUP_DEFAULTS: dict[str, Any] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "group.protocol": "classic",
}


#: How long a producer waits to fill a batch. A broker's work is mostly per produce request and
#: per record batch, hardly per message: at 1,000-3,000 messages/s, Tansu spent ~140-590 µs of CPU
#: per message at 2-5 ms (small batches, each fetched again by every consumer), ~40-120 µs at
#: 20 ms (depending on the day) and, in runs beside 20 ms ones at 105-121 µs, ~60-77 µs at 60 ms
#: (the whole stack at 20,000 and 25,000 viewers, BENCHMARKS.md). The
#: wait is added once to a request's answer and to each producer on an event's way to the page
#: (collector, then consumer: ~+80 ms at the median against 20 ms). Override with KAFKA_LINGER_MS.
LINGER_MS = 60


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Durable producer: every accepted event is acknowledged by all in-sync replicas."""
    base: dict[str, Any] = {
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": LINGER_MS,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 200_000,
        "message.timeout.ms": max(1000, int(settings.produce_timeout_s * 1000)),
    }
    base.update(extra)
    return client_config(settings, **{**base, **_passthrough_only(settings, base)})


#: The longest a fetch waits for data. Apache Kafka answers a waiting fetch as soon as data
#: arrives; Tansu answers at the end of the wait, so with librdkafka's 500 ms a message waited
#: ~100 ms (p50) and up to the full wait for each consumer on its way to the page, against ~50 ms
#: at 100 ms. The cost is idle fetches: ~1 % of a core of Tansu per consumer. Override with
#: KAFKA_FETCH_WAIT_MAX_MS.
FETCH_WAIT_MAX_MS = 100


def consumer_config(settings: Settings, group_id: str | None = None, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "group.id": group_id or settings.consumer_group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
        **GROUP_DEFAULTS,
    }
    base.update(extra)
    return client_config(settings, **{**base, **_passthrough_only(settings, base)})


def client_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Connection properties for any client (admin, producer, consumer): ``kafka_config`` plus
    Amazon MSK IAM auth (``oauth_cb``) when ``LVP_KAFKA_MSK_IAM`` is on. Use this, not
    ``settings.kafka_config()``, wherever a client is built."""
    conf = settings.kafka_config(**extra)
    if settings.log_format.strip().lower() == "json" and "logger" not in conf:
        # librdkafka's own lines through Python logging (one JSON object per line, see lvp.logs)
        conf["logger"] = logging.getLogger("lvp.librdkafka")
    if settings.kafka_msk_iam:
        from lvp.msk import with_iam_auth  # boto signer only when MSK IAM is on

        conf = with_iam_auth(conf, settings.aws_region)
    return conf


def _passthrough_only(settings: Settings, base: dict[str, Any]) -> dict[str, Any]:
    """Explicit KAFKA_* settings win over our defaults."""
    env_conf = settings.kafka_config()
    return {k: v for k, v in env_conf.items() if k in base}


def changes_topic_config(settings: Settings) -> dict[str, str]:
    """The changes topic keeps each viewer's latest profile (compaction), but not for ever: a
    viewer quiet for ``LVP_RETENTION_DAYS`` has its last profile deleted with the segment, as
    DynamoDB's TTL expires the item (``compact,delete``)."""
    retention_ms = int(settings.retention_days) * 86_400_000
    return {"cleanup.policy": "compact,delete", "retention.ms": str(retention_ms)}


def topic_specs(settings: Settings) -> list[NewTopic]:
    n, r = settings.topic_partitions, settings.topic_replication
    return [
        NewTopic(settings.topic_good, num_partitions=n, replication_factor=r),
        NewTopic(settings.topic_bad, num_partitions=n, replication_factor=r),
        NewTopic(
            settings.topic_changes,
            num_partitions=n,
            replication_factor=r,
            config=changes_topic_config(settings),
        ),
    ]


def create_topics(settings: Settings, timeout: float = 15.0) -> dict[str, str]:
    """Create the project's topics; existing ones keep their partitions, but an existing changes
    topic gets the retention of :func:`changes_topic_config` (so a topic created compact-only
    by an older version stops keeping profiles for ever). Returns topic -> outcome (``created``
    or ``exists``); raises :class:`~lvp.errors.Unavailable` when the brokers do not answer
    within ``timeout`` or refuse a topic or the retention change."""
    admin = AdminClient(client_config(settings))
    futures = admin.create_topics(topic_specs(settings), request_timeout=timeout)
    outcome: dict[str, str] = {}
    where = f"Kafka at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS)"
    for topic, fut in futures.items():
        try:
            fut.result(timeout=timeout)
            outcome[topic] = "created"
        except TimeoutError:
            raise Unavailable(f"{where} did not answer within {timeout:g} s") from None
        except KafkaException as exc:
            err = exc.args[0]
            if getattr(err, "name", lambda: "")() == "TOPIC_ALREADY_EXISTS":
                outcome[topic] = "exists"
            else:
                raise Unavailable(f"{where} refused topic {topic}: {err}") from None
    if outcome.get(settings.topic_changes) == "exists":
        _set_changes_retention(admin, settings, where, timeout)
    return outcome


def _set_changes_retention(admin: AdminClient, settings: Settings, where: str, timeout: float) -> None:
    entries = [
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
        for k, v in changes_topic_config(settings).items()
    ]
    resource = ConfigResource("TOPIC", settings.topic_changes, incremental_configs=entries)
    for fut in admin.incremental_alter_configs([resource], request_timeout=timeout).values():
        try:
            fut.result(timeout=timeout)
        except (KafkaException, TimeoutError) as exc:
            raise Unavailable(
                f"{where} refused the retention of {settings.topic_changes} "
                f"({changes_topic_config(settings)}): {exc}"
            ) from None


def end_offsets(config: dict[str, Any], topic: str, timeout: float = 15.0) -> dict[int, int]:
    """Each partition's end offset (the offset the next message will get), as a fetch reports it.

    Not from a ListOffsets request: Tansu answers one with the first offset of the partition's
    last record batch + 1, short of the end by the rest of that batch. A consumer placed at the
    end of every partition reaches "end of partition" at once, and that event carries the end
    offset. Raises TimeoutError when some partition did not report within ``timeout``, and
    KafkaException (``UNKNOWN_TOPIC_OR_PART``) when there is no such topic."""
    from confluent_kafka import OFFSET_END, Consumer, KafkaError, TopicPartition

    conf = {
        **config,
        "group.id": config.get("group.id") or "lvp-end-offsets",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    }
    consumer = Consumer(conf)
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None:  # (a broker may leave a missing topic out)
            unknown = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, f"{topic}: no such topic")
            raise KafkaException(unknown if meta is None else meta.error)
        consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in meta.partitions])
        ends: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        while len(ends) < len(meta.partitions):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(set(meta.partitions) - set(ends))
                raise TimeoutError(f"{topic}: no end offset for partitions {missing} within {timeout:g} s")
            msg = consumer.poll(min(left, 0.5))
            if msg is None:
                continue
            err = msg.error()
            if err is not None and err.code() == KafkaError._PARTITION_EOF:
                ends[msg.partition() or 0] = msg.offset() or 0
            elif err is None:  # a message produced meanwhile: the end is past it
                p = msg.partition() or 0
                ends.pop(p, None)
        return ends
    finally:
        consumer.close()
