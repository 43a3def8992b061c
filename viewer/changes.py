"""Reads the compacted changes topic in full, in a background thread, and hands batches of
:class:`lvp.changes.Change` (profiles, erasures, touches; decoded here, off the loop, with
:func:`lvp.changes.parse_message`) to the asyncio loop.

No consumer group: the reader assigns itself every partition from the beginning (and picks up
partitions added later), so every `lvp viewer` process sees every viewer. It reports ``loaded``
once every partition has reached its end once (partition EOF, which is reliable on Tansu too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from lvp.changes import Change, parse_message
from lvp.config import Settings
from lvp.kafka import FETCH_WAIT_MAX_MS, client_config

__all__ = ["BatchHandler", "Change", "ChangesReader", "parse_message", "reader_config"]

log = logging.getLogger("lvp.viewer.changes")

BatchHandler = Callable[[list[Change], int], None]

BATCH = 1000
POLL_TIMEOUT_S = 0.1
REFRESH_PARTITIONS_S = 30.0
MAX_PENDING = 4  # batches handed to the loop and not yet applied


def reader_config(settings: Settings) -> dict[str, Any]:
    """librdkafka consumer properties: manual assignment, nothing committed, EOF events on."""
    return client_config(
        settings,
        **{
            # group.id is required by the client but never used: we only assign().
            "group.id": f"lvp-viewer-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
            "allow.auto.create.topics": False,
            **_explicit(settings),
        },
    )


def _explicit(settings: Settings) -> dict[str, Any]:
    """KAFKA_* environment settings (e.g. security) always win."""
    env = settings.kafka_config()
    env.pop("bootstrap.servers", None)
    return env


class ChangesReader:
    """The background thread. ``on_batch(changes, bad_count)`` and ``on_loaded()`` are called
    on the asyncio loop given to :meth:`start`."""

    def __init__(
        self,
        settings: Settings,
        on_batch: BatchHandler,
        on_loaded: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.topic = settings.topic_changes
        self.on_batch = on_batch
        self.on_loaded = on_loaded
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.loaded = threading.Event()
        self._pending = threading.Semaphore(MAX_PENDING)
        self.messages = 0
        self.error: str | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="lvp-viewer-changes", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # --- the thread -------------------------------------------------------------------------
    def _hand_over(self, batch: list[Change], bad: int) -> None:
        """Queue a batch for the loop; waits while MAX_PENDING batches are not yet applied, so
        catching up on a large topic never piles parsed messages up in memory."""
        while not self._pending.acquire(timeout=0.2):
            if self._stop.is_set():
                return

        def apply() -> None:
            try:
                self.on_batch(batch, bad)
            finally:
                self._pending.release()

        self._call(apply)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed while we were shutting down
            self._stop.set()

    def _run(self) -> None:
        consumer: Consumer | None = None
        try:
            consumer = Consumer(reader_config(self.settings))
            self._consume(consumer)
        except Exception as exc:  # keep the API up; /health shows the reader's trouble
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("changes reader stopped")
        finally:
            if consumer is not None:
                with contextlib.suppress(Exception):
                    consumer.close()

    def _partitions(self, consumer: Consumer) -> set[int]:
        meta = consumer.list_topics(self.topic, timeout=5.0)
        topic = meta.topics.get(self.topic)
        if topic is None or topic.error is not None:
            return set()
        return set(topic.partitions)

    def _consume(self, consumer: Consumer) -> None:
        assigned: set[int] = set()
        at_eof: set[int] = set()
        next_refresh = 0.0
        waiting_logged = False
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_refresh:
                try:
                    found = self._partitions(consumer)
                except KafkaException as exc:
                    log.warning("changes topic metadata: %s", exc)
                    found = set()
                new = found - assigned
                if new:
                    consumer.incremental_assign(
                        [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(new)]
                    )
                    assigned |= new
                    log.info("reading %s partitions %s of %s", len(new), sorted(new), self.topic)
                if not assigned:
                    if not waiting_logged:
                        log.warning("changes topic %s not found yet; waiting", self.topic)
                        waiting_logged = True
                    next_refresh = now + 1.0
                    self._stop.wait(1.0)
                    continue
                next_refresh = now + REFRESH_PARTITIONS_S
            msgs = consumer.consume(BATCH, timeout=POLL_TIMEOUT_S)
            batch: list[Change] = []
            bad = 0
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    partition = msg.partition()
                    if err.code() == KafkaError._PARTITION_EOF and partition is not None:
                        at_eof.add(partition)
                    else:
                        log.warning("changes topic: %s", err)
                    continue
                change = parse_message(msg.key(), msg.value())
                if change is None:
                    bad += 1
                else:
                    batch.append(change)
            self.messages += len(batch) + bad
            if batch or bad:
                self._hand_over(batch, bad)
            if not self.loaded.is_set() and assigned and assigned <= at_eof:
                self.loaded.set()
                self._call(self.on_loaded)
