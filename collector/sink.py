"""The Kafka sink: an idempotent ``acks=all`` producer and the bridge that lets a request await
the delivery reports of all its messages.

A request hands its messages to :meth:`KafkaSink.publish` and awaits one asyncio future; a
dedicated poll thread serves librdkafka's delivery callbacks and resolves that future (one
``call_soon_threadsafe`` per request, not per message) once every message is acknowledged or one
failed. :class:`SinkUnavailable` (-> HTTP 503 + Retry-After) is raised when the broker is known to
be unreachable, the producer queue is full, a delivery fails, or acks do not arrive within
``LVP_PRODUCE_TIMEOUT_S``. A fatal producer error (e.g. the idempotent producer's state lost
after a broker restart) replaces the producer; the collector keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer

from lvp.config import Settings
from lvp.kafka import producer_config

log = logging.getLogger(__name__)

Message = tuple[str, bytes | None, bytes]  # topic, key, value

_TIMED_OUT = object()
REPLACE_INTERVAL_S = 5.0


class SinkUnavailable(Exception):
    """Kafka did not (or cannot) acknowledge: answer 503 and let the tracker retry."""


class _Batch:
    """The messages of one request; resolved once, from the poll thread via the loop."""

    __slots__ = ("abandoned", "done", "error", "future", "generation", "loop", "n", "observe", "t0")

    def __init__(
        self,
        n: int,
        loop: asyncio.AbstractEventLoop,
        generation: int,
        observe: Callable[[float], None] | None,
    ) -> None:
        self.n = n
        self.done = 0
        self.error: Any = None
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.generation = generation
        self.abandoned = False
        self.observe = observe
        self.t0 = time.perf_counter()

    # poll thread
    def on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None and self.error is None:
            self.error = err
        self.done += 1
        if self.done == self.n:
            if self.observe is not None:  # one observation per request: until its last ack
                self.observe(time.perf_counter() - self.t0)
            if not self.abandoned:
                self.resolve_threadsafe(self.error)

    def resolve_threadsafe(self, value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
            self.loop.call_soon_threadsafe(self._resolve, value)

    # loop thread
    def _resolve(self, value: Any) -> None:
        if not self.future.done():
            self.future.set_result(value)


class KafkaSink:
    """Producer + poll thread + health; ``publish`` is the only thing requests call."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_delivery_latency: Callable[[float], None] | None = None,
        stats_interval_ms: int = 1000,
        **producer_overrides: Any,
    ) -> None:
        self.settings = settings
        self.timeout_s = settings.produce_timeout_s
        self._observe = on_delivery_latency
        self._conf = producer_config(
            settings,
            **{
                "statistics.interval.ms": stats_interval_ms,
                "reconnect.backoff.ms": 100,
                "reconnect.backoff.max.ms": 1000,
                **producer_overrides,
            },
        )
        self._conf["error_cb"] = self._on_error
        self._conf["stats_cb"] = self._on_stats
        self._producer: Producer | None = None
        self._generation = 0
        self._healthy = False
        self._fatal: KafkaError | None = None
        self._replace_wanted = False
        self._replaced_at = -1e9
        self._inflight: set[_Batch] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error = ""

    # -- lifecycle --
    def start(self, connect_timeout: float = 5.0) -> None:
        """Create the producer and the poll thread; waits up to ``connect_timeout`` for the broker
        (starting while it is down is allowed: /sink-health says 503 until it is reachable)."""
        self._producer = Producer(self._conf)
        try:
            self._producer.list_topics(timeout=connect_timeout)
            self._healthy = True
        except KafkaException as exc:
            self.last_error = f"broker unreachable at start: {exc.args[0]}"
            log.warning("Kafka sink: %s", self.last_error)
        self._thread = threading.Thread(target=self._run, name="kafka-sink-poll", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._producer is not None:
            remaining = self._producer.flush(timeout)
            if remaining:
                log.warning("Kafka sink: %d messages not delivered at shutdown", remaining)

    # -- health --
    @property
    def healthy(self) -> bool:
        return self._healthy and self._producer is not None

    @property
    def max_message_bytes(self) -> int:
        """The largest message the producer takes (librdkafka ``message.max.bytes``); a larger
        one fails at produce time, so the pipeline must not hand it over."""
        return int(self._conf.get("message.max.bytes", 1_000_000))

    def queue_depth(self) -> int:
        p = self._producer
        return len(p) if p is not None else 0

    def _on_error(self, err: KafkaError) -> None:  # poll thread
        if err.fatal():
            self._fatal = err
        code = err.code()
        if code in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE):
            if code == KafkaError._ALL_BROKERS_DOWN:
                self._healthy = False
            self.last_error = err.str()
        log.debug("Kafka sink error: %s", err.str())

    def _on_stats(self, stats: str) -> None:  # poll thread
        try:
            brokers = orjson.loads(stats).get("brokers", {})
        except orjson.JSONDecodeError:
            return
        up = any(b.get("state") == "UP" for b in brokers.values())
        if up != self._healthy:
            log.info("Kafka sink: broker %s", "reachable" if up else "unreachable")
        self._healthy = up

    # -- the poll thread --
    def _run(self) -> None:
        while not self._stop.is_set():
            producer = self._producer
            if producer is None:
                return
            try:
                producer.poll(0.05)
            except KafkaException as exc:
                err = exc.args[0]
                if isinstance(err, KafkaError) and err.fatal():
                    self._fatal = err
                else:
                    log.warning("Kafka sink poll: %s", exc)
            except Exception:
                log.exception("Kafka sink poll failed")
            if self._fatal is not None:
                err, self._fatal = self._fatal, None
                self._replace_producer(f"fatal error: {err.str()}")
            elif self._replace_wanted:
                self._replace_producer("deliveries fail while the broker is reachable")

    def _want_replacement(self) -> None:
        """Deliveries failed although the broker is reachable: the producer's state may not match
        the broker's any more (e.g. an idempotent producer id the restarted broker never issued,
        which librdkafka retries until every message times out). A fresh producer starts clean;
        at most one replacement per REPLACE_INTERVAL_S."""
        if self._healthy and time.monotonic() - self._replaced_at >= REPLACE_INTERVAL_S:
            self._replace_wanted = True

    def _replace_producer(self, reason: str) -> None:
        log.error("Kafka sink: replacing the producer (%s)", reason)
        self.last_error = reason
        self._replace_wanted = False
        self._replaced_at = time.monotonic()
        err = reason
        old = self._producer
        with self._lock:
            self._generation += 1
            self._healthy = False
            new = self._producer = Producer(self._conf)
            stale = [b for b in self._inflight if b.generation < self._generation]
        for batch in stale:
            batch.abandoned = True
            batch.resolve_threadsafe(f"producer replaced: {err}")
        if old is not None:
            try:
                old.purge(in_queue=True, in_flight=True, blocking=False)
                old.poll(0)
            except Exception:  # a fatal producer may refuse; it is dropped either way
                pass
        try:
            new.list_topics(timeout=2.0)
            self._healthy = True
        except KafkaException:
            pass  # the stats callback reports when the broker is reachable again

    # -- publishing --
    async def publish(self, messages: Sequence[Message]) -> None:
        """Produce ``messages`` and wait until Kafka acknowledged all of them.

        Raises :class:`SinkUnavailable` when that cannot be promised; some messages may still
        have been written (at-least-once: a retried request can duplicate them)."""
        if not messages:
            return
        producer = self._producer
        if producer is None or not self._healthy:
            raise SinkUnavailable(f"Kafka is unreachable ({self.last_error or 'not connected'})")
        loop = asyncio.get_running_loop()
        batch = _Batch(len(messages), loop, self._generation, self._observe)
        with self._lock:
            self._inflight.add(batch)
        try:
            produce = producer.produce
            cb = batch.on_delivery
            try:
                for topic, key, value in messages:
                    produce(topic, value, key, on_delivery=cb)
            except BufferError:
                batch.abandoned = True
                raise SinkUnavailable("the producer queue is full") from None
            except KafkaException as exc:
                batch.abandoned = True
                raise SinkUnavailable(f"produce failed: {exc.args[0]}") from None
            timer = loop.call_later(self.timeout_s, batch._resolve, _TIMED_OUT)
            try:
                result = await batch.future
            finally:
                timer.cancel()
        finally:
            with self._lock:
                self._inflight.discard(batch)
        if result is _TIMED_OUT:
            batch.abandoned = True
            self._want_replacement()
            raise SinkUnavailable(f"Kafka did not acknowledge within {self.timeout_s:g}s")
        if result is not None:
            self._want_replacement()
            raise SinkUnavailable(f"delivery failed: {result}")
        self._healthy = True
