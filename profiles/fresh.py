"""The freshest profile of one viewer for `lvp profile get`: DynamoDB, then the changes topic.

DynamoDB lags behind the live view by design (docs/lazy-writes.md): a viewer whose only changes
since its last write are touches (pings: position, last_seen, play time) is written up to
``LVP_PROFILE_WRITE_INTERVAL_S`` later. Whatever the live page shows was published on the changes
topic (``lvp.changes``), so this reads the viewer's partition of that topic from a little more
than ``LVP_ACTIVE_TIMEOUT_S`` ago (an active viewer was published within that time; longer if
``LVP_STATUS_WRITE_DELAY_S`` is: a status change is in DynamoDB only after it) and applies,
in order, the viewer's profile messages, touches and tombstones on top of the stored profile.

Kafka's ListOffsets by time finds where to start; a broker that ignores the time (Tansu answers
with the partition's start) makes the read longer, never wrong.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from lvp.changes import parse_message, partition_for
from lvp.config import Settings
from lvp.kafka import client_config
from lvp.profile import compare_versions

__all__ = ["LiveReadError", "freshen"]

#: Extra look-back on top of the active timeout (publication delays, clock skew).
_MARGIN_S = 30.0


def look_back_s(settings: Settings) -> float:
    """How far back the changes topic is read: an active viewer was published within the active
    timeout, and a change not in DynamoDB yet (a status change waits LVP_STATUS_WRITE_DELAY_S,
    e.g. a viewer's end) within the delay."""
    return max(settings.active_timeout_s, settings.status_write_delay_s) + _MARGIN_S


class LiveReadError(RuntimeError):
    """The changes topic could not be read (the stored profile is all there is)."""


def freshen(
    settings: Settings, viewer_id: str, stored: dict[str, Any] | None, timeout_s: float = 20.0
) -> dict[str, Any] | None:
    """``stored`` (the DynamoDB profile, or None) brought up to what the changes topic published
    for ``viewer_id`` recently; None if the viewer was erased meanwhile or is unknown."""
    topic = settings.topic_changes
    reader = Consumer(
        client_config(
            settings,
            **{
                "group.id": f"lvp-profile-get-{time.time_ns()}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            },
        )
    )
    try:
        try:
            meta = reader.list_topics(topic, timeout=10).topics.get(topic)
        except KafkaException as exc:
            raise LiveReadError(f"cannot read {topic}: {exc}") from None
        if meta is None or meta.error is not None or not meta.partitions:
            raise LiveReadError(f"cannot read {topic}: {meta.error if meta else 'no such topic'}")
        key = viewer_id.encode()
        p = partition_for(key, len(meta.partitions))
        since_ms = int((time.time() - look_back_s(settings)) * 1000)
        try:
            (start,) = reader.offsets_for_times([TopicPartition(topic, p, since_ms)], timeout=10)
        except KafkaException as exc:
            raise LiveReadError(f"cannot find where to read {topic}: {exc}") from None
        offset = start.offset if start.offset >= 0 else 0
        reader.assign([TopicPartition(topic, p, offset)])
        profile = None if stored is None else dict(stored)
        deadline = time.monotonic() + timeout_s
        while True:
            if time.monotonic() > deadline:
                raise LiveReadError(f"{topic} partition {p} not read to its end within {timeout_s:.0f}s")
            msgs = reader.consume(1000, 0.5)
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return profile
                    raise LiveReadError(f"reading {topic}: {err}")
                mkey = m.key()
                if mkey != key and not (mkey is not None and mkey.startswith(b"\x00")):
                    continue
                change = parse_message(mkey, m.value())
                if change is None:
                    continue
                if change.kind == "erasure" and change.viewer_id == viewer_id:
                    profile = None
                elif change.kind == "profile" and change.profile is not None:
                    if profile is None or compare_versions(change.profile, profile) >= 0:
                        profile = change.profile
                elif change.kind == "touches" and change.touches and profile is not None:
                    patch = change.touches.get(viewer_id)
                    if patch is not None and compare_versions(patch, profile) >= 0:
                        profile = {**profile, **patch}
    finally:
        reader.close()
