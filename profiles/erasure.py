"""Erasure of a viewer: `lvp profile delete` and what every running `lvp profiles` does about it.

The protocol, and why it holds, is written once: docs/contracts.md#erasure. Here:

* :func:`erase` — the CLI's side (`lvp profile delete`): the tombstones, the grace period, the
  erasure markers.
* :class:`Erasures` — the consumer's side: the reader of tombstones on the changes topic
  (:meth:`Erasures.open`, :meth:`Erasures.read`), the erasure times it must respect
  (:attr:`Erasures.erased`), :meth:`Erasures.forget` and the replay seek (:meth:`Erasures.seek`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from confluent_kafka import (
    OFFSET_END,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from lvp.config import ConfigError, Settings
from lvp.kafka import consumer_config, producer_config
from profiles.metrics import ProfilesMetrics
from profiles.offsets import CHECKPOINT_KEEP_S, OffsetLedger
from profiles.store import ProfileStore, StoreError
from profiles.tracked import TrackedViewers

__all__ = [
    "ERASED_KEEP_S",
    "ERASURE_POLL_S",
    "ErasureReaderError",
    "Erasures",
    "erase",
    "send_tombstone",
]

log = logging.getLogger(__name__)

#: How far the clock of `lvp profile delete` may be ahead of the collectors' clocks
#: (partitions are read again from this long before the erasure time).
ERASURE_CLOCK_SKEW_S: Final = 5.0
#: How often the erasure reader is polled (`lvp profile delete` waits 2 s by default).
ERASURE_POLL_S: Final = 0.05
#: How long events collected before an erasure are still recognised (and dropped).
ERASED_KEEP_S: Final = 3600.0


class ErasureReaderError(ConfigError):
    """The changes topic cannot be read: erasures would not reach this consumer, so it must not
    run (it would write erased viewers back)."""


# --- `lvp profile delete` --------------------------------------------------------------------------
def erase(
    settings: Settings, store: ProfileStore, vids: list[str], grace_s: float
) -> Iterator[dict[str, Any]]:
    """Erase ``vids`` (docs/contracts.md#erasure). Yields, as each viewer is deleted,
    ``{"viewer_id", "profile_deleted", "history_deleted", "tombstone"}`` (``tombstone`` False: it
    could not be published; run the delete again)."""
    erased_at_ms = int(time.time() * 1000)
    found = {vid: (store.get_profile(vid) is not None, sum(1 for _ in store.history(vid))) for vid in vids}
    sent = {vid: send_tombstone(settings, vid, erased_at_ms) for vid in vids}
    if any(sent.values()) and grace_s > 0:
        time.sleep(grace_s)
    for vid in vids:
        store.delete_viewer(vid, erased_at_ms)  # leaves the erasure marker
        existed, history = found[vid]
        yield {
            "viewer_id": vid,
            "profile_deleted": existed,
            "history_deleted": history,
            "tombstone": sent[vid],
        }


def send_tombstone(settings: Settings, viewer_id: str, erased_at_ms: int, timeout_s: float = 15.0) -> bool:
    """A tombstone (null value) keyed by the viewer, its timestamp the erasure time."""
    delivered: list[bool] = []
    producer = Producer(producer_config(settings, **{"message.timeout.ms": int(timeout_s * 1000)}))
    producer.produce(
        settings.topic_changes,
        key=viewer_id.encode(),
        value=None,
        timestamp=erased_at_ms,
        on_delivery=lambda err, _msg: delivered.append(err is None),
    )
    producer.flush(timeout_s + 1)
    return bool(delivered and delivered[0])


# --- the consumer's side -----------------------------------------------------------------------------
#: (topic, key, value, timestamp ms) -> produced (the consumer's producer)
Produce = Callable[[str, bytes, None, int], None]


class Erasures:
    """What one `lvp profiles` knows and does about erasures."""

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str,
        metrics: ProfilesMetrics,
        store: ProfileStore,
        tracked: TrackedViewers,
        offsets: OffsetLedger,
    ) -> None:
        self.settings = settings
        self.topic = topic  # the input topic (the one read again)
        self.metrics = metrics
        self.store = store
        self.tracked = tracked
        self.offsets = offsets
        #: viewer -> erasure time T (collector clock, s): their events collected up to T are dropped
        self.erased: dict[str, float] = {}
        self.reader: Consumer | None = None
        self.errors = 0

    # --- the tombstone reader -------------------------------------------------------------------
    def open(self) -> int:
        """Start reading the changes topic from its end: `lvp profile delete` publishes a
        tombstone there, and this consumer must then forget the viewer too — else the state it
        holds in memory would bring the erased data back with the next event. Returns the
        topic's partition count.

        Without a working reader the consumer refuses to run (:class:`ErasureReaderError`): the
        topic missing, no partitions, or this consumer not allowed to read it."""
        topic = self.settings.topic_changes
        reader = Consumer(
            consumer_config(self.settings, group_id=f"{self.settings.consumer_group}-erasures")
        )  # fmt: skip
        try:
            meta = reader.list_topics(topic, timeout=10).topics.get(topic)
        except KafkaException as exc:
            reader.close()
            self.metrics.erasure_reader_errors.inc()
            raise ErasureReaderError(f"cannot read the changes topic {topic!r} for erasures: {exc}") from None
        if meta is None or meta.error is not None or not meta.partitions:
            reader.close()
            self.metrics.erasure_reader_errors.inc()
            why = "it does not exist" if meta is None or not meta.partitions else str(meta.error)
            raise ErasureReaderError(
                f"cannot read the changes topic {topic!r} for erasures: {why} "
                f"(create it with `lvp topics create`; on MSK grant kafka-cluster:ReadData on it)"
            )
        reader.assign([TopicPartition(topic, p, OFFSET_END) for p in meta.partitions])
        self.reader = reader
        return len(meta.partitions)

    def close(self) -> None:
        if self.reader is not None:
            with contextlib.suppress(KafkaException, RuntimeError):
                self.reader.close()

    def read(self) -> dict[str, float] | None:
        """New erasure tombstones (viewer -> T). Reader errors are logged and counted
        (lvp_profiles_erasure_reader_errors_total); None when the reader was refused for good
        (authorization, a fatal error): the consumer then stops instead of going on blind."""
        if self.reader is None:
            return {}
        erased: dict[str, float] = {}
        try:
            msgs = self.reader.consume(500, 0)
        except KafkaException as exc:
            msgs = []
            self._failed(exc.args[0] if exc.args else exc)
        for m in msgs:
            err = m.error()
            if err is not None:
                if not self._failed(err):
                    return None
                continue
            key = m.key()
            if m.value() is None and key:
                kind, ms = m.timestamp()
                at = ms / 1000 if kind != TIMESTAMP_NOT_AVAILABLE and ms > 0 else time.time()
                vid = key.decode("utf-8", "replace")
                erased[vid] = max(at, erased.get(vid, 0.0))
        # a tombstone seen before (this consumer republishes the ones it acts on) is done
        return {v: at for v, at in erased.items() if at > self.erased.get(v, 0.0)}

    def _failed(self, err: Any) -> bool:
        """Log and count an error of the erasure reader; False if it is final."""
        self.metrics.erasure_reader_errors.inc()
        self.errors += 1
        code = err.code() if isinstance(err, KafkaError) else None
        final = isinstance(err, KafkaError) and (
            err.fatal()
            or code
            in (
                KafkaError.TOPIC_AUTHORIZATION_FAILED,
                KafkaError.GROUP_AUTHORIZATION_FAILED,
                KafkaError.CLUSTER_AUTHORIZATION_FAILED,
                KafkaError._UNKNOWN_TOPIC,
                KafkaError.UNKNOWN_TOPIC_OR_PART,
            )
        )
        if final:
            log.error(
                "the erasure reader of %s was refused (%s): stopping — erased viewers could be "
                "written back otherwise",
                self.settings.topic_changes,
                err,
            )
            return False
        if self.errors == 1 or self.errors % 100 == 0:
            log.warning("erasure reader error #%d on %s: %s", self.errors, self.settings.topic_changes, err)
        return True

    # --- erasure times ----------------------------------------------------------------------------
    def note(self, vid: str, at: float) -> None:
        """``vid`` was erased at ``at`` (a tombstone, or an erasure marker loaded)."""
        self.erased[vid] = max(at, self.erased.get(vid, 0.0))

    def expire(self, now: float) -> None:
        """Forget erasure times older than :data:`ERASED_KEEP_S` of viewers not held."""
        horizon = now - ERASED_KEEP_S
        states = self.tracked.states
        self.erased = {v: at for v, at in self.erased.items() if at >= horizon or v in states}

    # --- forgetting -------------------------------------------------------------------------------
    def forget(self, erased: dict[str, float], consumer: Consumer | None, produce: Produce) -> int:
        """Drop erased viewers (viewer id -> erasure time T): their state, unflushed changes and
        queued events, then delete them again in case a flush wrote them back, and republish
        their tombstones. If this consumer read a viewer's partition after about T, an event of
        the new profile may already be in the dropped state: the partition is read again from
        before T (:meth:`seek`). Returns how many partitions are read again.

        The caller first finishes its flush in flight and makes loads in flight stale."""
        tracked, offsets = self.tracked, self.offsets
        vids = set(erased)
        held = {v for v in vids if tracked.held(v)}
        replay: dict[int, int] = {}
        for vid, at in erased.items():
            p = tracked.partition_of(vid)
            if vid in held and p is not None and p in offsets.assigned:
                off = self._replay_offset(p, at - ERASURE_CLOCK_SKEW_S)
                if off is not None:
                    replay[p] = min(off, replay.get(p, off))
            self.note(vid, at)
        tracked.remove_many(vids)
        for vid in held:  # what this consumer held may have been written or published since T
            try:
                self.store.delete_viewer(vid, int(self.erased[vid] * 1000))
            except StoreError as exc:
                log.warning("re-deleting an erased viewer failed: %s", exc)
            # again a tombstone, stamped with the same erasure time (not a later one: that
            # would make the readers drop the new profile's first events)
            produce(self.settings.topic_changes, vid.encode(), None, int(self.erased[vid] * 1000))
        self.metrics.tracked_viewers.set(len(tracked.states))
        replays = sum(self.seek(consumer, p, off) for p, off in replay.items())
        log.info(
            "forgot %d erased viewer(s), %d of them held here%s",
            len(vids),
            len(held),
            f"; re-reading partitions {sorted(replay)}" * bool(replay),
        )
        return replays

    def _replay_offset(self, p: int, since: float) -> int | None:
        offsets = self.offsets
        oldest = offsets.oldest_checkpoint(p)
        off = offsets.replay_offset(p, since)
        late = oldest is not None and since < oldest and time.time() - since > CHECKPOINT_KEEP_S
        if off is not None and late:
            log.warning("erasure notice older than %.0fs: re-reading partition %d from %.0fs ago only",
                        CHECKPOINT_KEEP_S, p, time.time() - (oldest or 0.0))  # fmt: skip
        return off

    def seek(self, consumer: Consumer | None, p: int, offset: int) -> bool:
        """Read partition ``p`` again from ``offset`` (what was applied since is applied again:
        duplicates to the engine) and hold its commits there until it is read again."""
        if consumer is None:
            return False
        try:
            consumer.seek(TopicPartition(self.topic, p, offset))
        except KafkaException as exc:
            log.warning("could not re-read partition %d from %d: %s", p, offset, exc)
            return False
        self.offsets.seek(p, offset, time.time())
        return True
