"""`lvp profiles`: the Kafka consumer group that keeps every viewer's profile.

Hot state lives in memory (one :class:`~profiles.engine.ViewerState` per viewer); DynamoDB sees
coalesced, batched writes. The delivery contract is *at-least-once input + idempotent
application = exact final state*:

* Offsets are committed **only once everything before them is stored**. A flush takes a
  snapshot — the dirty viewers' profiles, engine states and history changes, plus each
  partition's next offset — in the poll thread, writes it from a background thread while
  consumption goes on, and commits the snapshot's offsets once the write succeeded.
* Every dirty viewer remembers the offset of the first event it has not stored yet (``dirty``,
  profiles/dirty.py). A flush that fails part-way keeps what it wrote: only the viewers and history
  changes the store reports unwritten become dirty / pending again, with their first unstored
  offsets, and each partition is committed up to the first of those (never past an event whose
  write failed). Writes are ordered by that offset, so a partly written flush moves the commits
  as far as it can.
* DynamoDB throttled or down: the flush fails (the store stops after the first batch that gives
  up), what was not written stays in memory and the flush is retried with exponential backoff
  (short again after a flush that wrote something); when too many viewers are dirty the
  partitions are paused. When DynamoDB is back, everything is written and committed.
* A viewer's state is loaded from DynamoDB the first time it is seen after an assignment or a
  restart: its events wait (in order) while a background BatchGetItem fetches every unknown
  viewer at once, other viewers' events go on, and commits hold back at the first waiting
  offset. Messages re-read after a crash are recognised as duplicates by the engine.
* A flush writes history changes before the profiles whose engine state assumes them, so a
  crash between the two cannot lose history.
* Before partitions are revoked, everything is flushed and committed, and the revoked
  partitions' viewers are dropped; the next owner loads them from DynamoDB.
* Lazy writes (docs/lazy-writes.md): a viewer whose changes since its last publication are
  touch fields only (pings: position, last_seen, play time) is written at the cadence
  ``LVP_PROFILE_WRITE_INTERVAL_S`` or when it goes quiet; a new viewer or a status change is
  written ``LVP_STATUS_WRITE_DELAY_S`` later (with every change meanwhile: one write for an ad
  break's start and end); other significant changes (counters, ads) are published at once and
  written with the viewer's next write. The commit rule above is what keeps this exact: an
  unwritten ping holds its partition's commit back, and a crash replays it.
* Changed profiles are published to ``LVP_TOPIC_CHANGES`` (``lvp.changes``): significant changes
  as full profiles every ``LVP_PUBLISH_INTERVAL_S``, touches batched into one message per
  partition every ``LVP_TOUCH_INTERVAL_S``. The engine builds a profile once per change: the
  flush reuses what the publication read.
* Memory: after a flush, a viewer's engine state is compacted; a viewer that then stays quiet
  for ``LVP_FREEZE_AFTER_S`` of wall time (no event changed it, nothing of it waits for DynamoDB) is
  frozen — only its compressed state is kept (:meth:`~profiles.engine.ViewerState.compact`)
  until its next event, which thaws it (a few tens of µs). Viewers untouched for
  ``evict_after_s`` are dropped altogether (their state is in DynamoDB).
* Erasure: see docs/contracts.md#erasure (profiles/erasure.py).

Input messages must be keyed so that all events of a viewer land in one partition (our collector
keys by viewer id; configure a Snowbridge partition key accordingly).
"""

from __future__ import annotations

import contextlib
import logging
import operator
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from lvp import badrows
from lvp.changes import TOUCH_FIELDS, TOUCH_KEY_PREFIX, encode_touches, partition_for, significant_signer
from lvp.config import Settings
from lvp.gc_policy import service_gc
from lvp.kafka import consumer_config, producer_config
from lvp.profile import PROFILE_FIELDS
from lvp.pseudonym import Pseudonymizer
from profiles.dirty import DirtyLedger
from profiles.engine import ViewerState
from profiles.erasure import ERASURE_POLL_S, ErasureReaderError, Erasures
from profiles.inputs import InputDecoder, InputError
from profiles.metrics import ProfilesMetrics
from profiles.offsets import OffsetLedger
from profiles.state import STATUSES
from profiles.store import ProfileStore, ProfileWrite, StoreError, WriteFailed
from profiles.tracked import HistKey, Queued, TrackedViewers

log = logging.getLogger(__name__)

BATCH_SIZE: Final = 2000
_MAX_BACKOFF_S: Final = 30.0
_LAG_INTERVAL_S: Final = 1.0
_PROGRESS_INTERVAL_S: Final = 2.0
_PRODUCER_FLUSH_S: Final = 10.0
#: Events waiting for their viewers' stored state before consumption pauses.
_MAX_WAITING: Final = 200_000
#: The health check fails once the poll loop has not turned for this long (s).
STALL_S: Final = 60.0
#: Most viewers in one touches message (a message stays well below Kafka's 1 MB default).
_TOUCHES_PER_MESSAGE: Final = 2000
#: A viewer's cadence write comes up to this share of LVP_PROFILE_WRITE_INTERVAL_S early (a
#: pseudo-random amount per viewer and dirty period): viewers who joined together are not all
#: written at once every interval (profiles/dirty.py).
CADENCE_SPREAD: Final = 0.1
#: Why a profile was written to DynamoDB (the ``reason`` label of lvp_profiles_writes_total).
WRITE_REASONS: Final = ("change", "cadence", "quiet", "final")


#: _pub_key: the low bits hold the published status (its index in STATUSES; 7: none).
_STATUS_BITS: Final = 3
_STATUS_MASK: Final = (1 << _STATUS_BITS) - 1
_STATUS_INDEX: Final = {s: i for i, s in enumerate(STATUSES)}


def _pub_key(signature: int, profile: Mapping[str, Any]) -> int:
    """One int for what was published of a viewer: its significant signature (60 bits) and its
    status (the low bits), so that a status change is told from other significant changes."""
    status = _STATUS_INDEX.get(profile.get("status"), _STATUS_MASK)  # type: ignore[arg-type]
    return ((signature & ((1 << 60) - 1)) << _STATUS_BITS) | status


#: Equal for two profiles = only touch fields differ (lvp.changes.significant_signer).
_significant: Final = significant_signer(PROFILE_FIELDS)
_touch_values = operator.itemgetter(*TOUCH_FIELDS)


@dataclass(slots=True)
class _Flush:
    """A flush in flight: what it covers and what to restore if it fails."""

    vids: set[str]
    hist: dict[HistKey, Any]
    offsets: dict[int, int]
    #: (partition, offset) of each viewer's first event not stored before this flush
    since: dict[str, tuple[int, int]]
    started: float
    requests: int
    future: Future[int] | None = None


@dataclass(slots=True)
class Stats:
    """Counters for progress output, tests and the benchmark."""

    messages: int = 0
    applied: int = 0
    duplicates: int = 0
    bad: int = 0
    flushes: int = 0
    flush_failures: int = 0
    partial_flushes: int = 0  # failed flushes that still wrote part of their requests
    writes: int = 0
    loads: int = 0
    commits: int = 0
    published: int = 0
    evicted: int = 0
    load_failures: int = 0
    frozen: int = 0
    erased_dropped: int = 0  # events collected before their viewer was erased
    replays: int = 0  # partitions read again after an erasure
    touches: int = 0  # viewers published in touches messages (changes of touch fields only)
    unreadable: int = 0  # viewers whose stored state this version cannot read (partition stopped)
    #: profiles written, by reason (WRITE_REASONS)
    written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WRITE_REASONS, 0))


class ProfilesConsumer:
    """One member of the ``lvp profiles`` consumer group. Call :meth:`run` (blocking) and
    :meth:`stop` (from a signal handler or another thread) to finish with a final flush."""

    def __init__(
        self,
        settings: Settings,
        *,
        pseudonymize_input: bool = False,
        rebuild: bool = False,
        exit_at_end: bool = False,
        store: ProfileStore | None = None,
        metrics: ProfilesMetrics | None = None,
        progress: Callable[[str], None] | None = None,
        batch_size: int = BATCH_SIZE,
        evict_after_s: float | None = None,
        freeze_after_s: float | None = None,
        consumer_overrides: dict[str, Any] | None = None,
        stall_after_s: float = STALL_S,
    ) -> None:
        if freeze_after_s is None:
            freeze_after_s = settings.freeze_after_s
        self.settings = settings
        self.topic = settings.topic_good
        self.rebuild = rebuild
        self.exit_at_end = exit_at_end
        self.batch_size = batch_size
        self.metrics = metrics or ProfilesMetrics()
        self.store = store or ProfileStore(settings, metrics=self.metrics)
        self._own_store = store is None
        self.decoder = InputDecoder(
            Pseudonymizer(settings.require_pseudonym_key(), settings.pseudonym_cache_size)
            if pseudonymize_input
            else None
        )
        self.progress = progress
        self.reorder_window_s = settings.reorder_window_s
        self.evict_after_s = (
            evict_after_s if evict_after_s is not None else max(600.0, 4 * settings.active_timeout_s)
        )
        self.freeze_after_s = freeze_after_s
        self.stats = Stats()
        self._consumer_overrides = consumer_overrides or {}

        # every per-viewer collection, with the one way to drop a viewer (profiles/tracked.py);
        # the dirty ledger: each viewer with changes not stored yet, with the (partition, offset)
        # of its first unstored event (commits of its partition stop there until it is written)
        # and when it became dirty (profiles/dirty.py)
        self.tracked = TrackedViewers(
            DirtyLedger(
                settings.profile_write_interval_s, settings.active_timeout_s, time.monotonic(), CADENCE_SPREAD
            )
        )
        # per partition: read position, commits, checkpoints (profiles/offsets.py)
        self.offsets = OffsetLedger()
        self._reset_done: set[int] = set()

        # Lazy writes (docs/lazy-writes.md). A dirty viewer is written LVP_STATUS_WRITE_DELAY_S
        # after it is new or its status changed (``tracked.status_due``, then ``tracked.urgent``:
        # the next flush), else once it has been dirty for
        # ``write_interval_s`` or quiet for ``quiet_s`` of event time (``_event_clock``: the
        # newest collector time read per partition, so a lagging consumer sees no false quiet).
        self.write_interval_s = settings.profile_write_interval_s
        self.quiet_s = settings.active_timeout_s
        self._event_clock: dict[int, float] = {}
        self._flush_all = False  # the next flush writes every dirty viewer (end of input)
        # Publication: per viewer, the significant signature and status last published, packed
        # into one int (_pub_key, in ``tracked.pub_sig``); viewers whose changes since then are
        # touches only wait in ``tracked.touch_pending`` for the next touches message.
        self._changes_partitions = 0  # partitions of the changes topic (0: unknown)
        self.heartbeat = time.monotonic()  # last turn of the poll loop (the health check reads it)
        self.stall_after_s = stall_after_s

        # viewers seen for the first time wait in ``tracked.loading`` (events in arrival order)
        # while their stored state is loaded in the background; their offsets are held back from
        # commits. A stored state this version cannot read: its viewer's events stay there
        # (``tracked.unreadable``), its partition is paused, and it is never overwritten.
        self._load_job: tuple[Future[tuple[dict[str, str], dict[str, int]]], set[str], int] | None = None
        self._load_failures = 0
        self._load_retry_at = 0.0
        self._generation = 0  # bumped on every revocation: older loads are stale
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lvp-load")

        self._inflight: _Flush | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._paused = False
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lvp-flush")
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        # erasures (docs/contracts.md#erasure): the tombstone reader, erasure times, forgetting
        self.erasure = Erasures(
            settings,
            topic=self.topic,
            metrics=self.metrics,
            store=self.store,
            tracked=self.tracked,
            offsets=self.offsets,
        )
        self._bad_in_flight = 0
        self._caught_up_reported = False
        self.metrics_port = 0

    # --- lifecycle ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to finish (final flush and commit). Safe from signal handlers."""
        self._stop.set()

    def run(self) -> int:
        """Consume until :meth:`stop` (or, with ``exit_at_end``, until every assigned partition is
        consumed, flushed and committed). Returns 0, or 1 if the final flush failed."""
        s = self.settings
        tracked = self.tracked
        self.metrics_port = self.metrics.serve(s.profiles_metrics_port, health=self.health_problem)
        if self.rebuild:
            self._clear_tables()
        try:
            self._changes_partitions = self.erasure.open()  # ErasureReaderError: refuse to run
        except ErasureReaderError:
            self._pool.shutdown(wait=False)
            self._loader.shutdown(wait=False)
            if self._own_store:
                self.store.close()
            self.metrics.close()
            raise
        conf = consumer_config(s, **{"enable.partition.eof": True, **self._consumer_overrides})
        self._consumer = consumer = Consumer(conf)
        self._producer = Producer(producer_config(s, **{"message.timeout.ms": 120_000}))
        consumer.subscribe(
            [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        now = time.monotonic()
        next_flush = now + s.flush_interval_s
        next_publish = now + s.publish_interval_s
        next_touches = now + s.touch_interval_s
        next_lag = now + _LAG_INTERVAL_S
        next_progress = now + _PROGRESS_INTERVAL_S
        next_evict = now + self.evict_after_s / 2
        next_freeze = now + self.freeze_after_s
        next_erasures = now
        ok = True
        try:
            with service_gc():  # (lvp.gc_policy: decoding allocates dozens of containers per event)
                while not self._stop.is_set():
                    busy = tracked.urgent or tracked.changed
                    msgs = consumer.consume(self.batch_size, 0.05 if busy else 0.2)
                    if msgs:
                        self._handle(msgs)
                    now = self.heartbeat = time.monotonic()
                    self._poll_load()
                    if self.tracked.to_load and self._load_job is None and now >= self._load_retry_at:
                        self._start_load()
                    self._poll_flush()
                    if now >= next_erasures:
                        if not self._poll_erasures():
                            ok = False
                            break  # the erasure reader is refused: stop rather than write erased viewers
                        next_erasures = now + ERASURE_POLL_S
                    if now >= next_publish:
                        self._publish()
                        next_publish = now + s.publish_interval_s
                    if now >= next_touches:
                        self._publish_touches()
                        next_touches = now + s.touch_interval_s
                    if self.exit_at_end and self.tracked.dirty and self._caught_up():
                        self._flush_all = True  # end of input: write everything now
                    if (
                        self._inflight is None
                        and now >= self._retry_at
                        and (now >= next_flush or len(tracked.urgent) >= s.flush_max_dirty or self._flush_all)
                    ):
                        self._start_flush(now)
                        next_flush = now + s.flush_interval_s
                    if self._paused and not self._must_pause():
                        self._resume()
                    if now >= next_lag:
                        self._update_lag()
                        next_lag = now + _LAG_INTERVAL_S
                    if self.progress is not None and now >= next_progress:
                        self._report_progress()
                        next_progress = now + _PROGRESS_INTERVAL_S
                    if now >= next_evict:
                        self._evict()
                        next_evict = now + self.evict_after_s / 2
                    if now >= next_freeze:
                        self.freeze_quiet()
                        next_freeze = now + self.freeze_after_s
                    self._producer.poll(0)
                    if self._caught_up() and self._inflight is None and not self.tracked.urgent:
                        if self.progress is not None and not self._caught_up_reported:
                            self._caught_up_reported = True
                            self._report_progress("caught up")
                        if self.exit_at_end and (self._at_end() or self.tracked.unreadable):
                            break
        finally:
            ok = self._shutdown() and ok and not self.tracked.unreadable
        return 0 if ok else 1

    def _shutdown(self) -> bool:
        ok = True
        try:
            self._finish_inflight()
            ok = self._flush_now(attempts=3)
            self._publish()
        except Exception:
            log.exception("final flush failed")
            ok = False
        if self._producer is not None:
            self._producer.flush(_PRODUCER_FLUSH_S)
        self.erasure.close()
        if self._consumer is not None:
            try:
                self._consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("closing the consumer: %s", exc)
        self._pool.shutdown(wait=True)
        self._loader.shutdown(wait=True)
        if self._own_store:
            self.store.close()
        self.metrics.close()
        return ok

    def _clear_tables(self) -> None:
        self._say("rebuild: clearing the profile and history tables")
        counts = self.store.clear(progress=lambda table, n: self._say(f"rebuild: {table}: {n} items deleted"))
        self._say("rebuild: cleared " + ", ".join(f"{t} ({n} items)" for t, n in counts.items()))

    def _say(self, line: str) -> None:
        self.heartbeat = time.monotonic()  # long steps (a rebuild's clear) report progress
        if self.progress is not None:
            self.progress(line)
        log.info("%s", line)

    def health_problem(self) -> str | None:
        """Why this consumer is unhealthy (served at ``/health``), or None: its poll loop has
        not turned for ``stall_after_s`` (:data:`STALL_S`: a hung call, a deadlock)."""
        stalled = time.monotonic() - self.heartbeat
        if stalled > self.stall_after_s:
            return f"poll loop stalled for {stalled:.0f}s"
        return None

    # --- rebalancing -------------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if self.rebuild and tp.partition not in self._reset_done:
                tp.offset = OFFSET_BEGINNING  # rebuild: recompute from the earliest retained offset
                self._reset_done.add(tp.partition)
            self.offsets.assign(tp.partition)
        consumer.assign(partitions)
        if self._paused:
            consumer.pause(partitions)
        log.info("assigned partitions %s", sorted(tp.partition for tp in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {tp.partition for tp in partitions}
        log.info("partitions %s revoked: flushing", sorted(revoked))
        try:
            self._finish_inflight()
            if not self._flush_now(attempts=2):
                log.warning("flush before revocation failed; the next owner re-reads from the last commit")
            self._publish()
        except Exception:
            log.exception("flush before revocation failed")
        self._drop_partitions(revoked)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {tp.partition for tp in partitions}
        log.warning("partitions %s lost: dropping their viewers without commit", sorted(lost))
        self._finish_inflight(commit=False)
        self._drop_partitions(lost)

    # --- erasure (docs/contracts.md#erasure; profiles/erasure.py) -------------------------------------
    def _poll_erasures(self) -> bool:
        """Act on new erasure tombstones; False when the erasure reader was refused for good (the
        consumer then stops instead of going on blind)."""
        erased = self.erasure.read()
        if erased is None:
            return False
        if erased:
            self.forget(erased)
        return True

    def forget(self, erased: dict[str, float]) -> None:
        """Forget erased viewers (viewer id -> erasure time T): :meth:`Erasures.forget
        <profiles.erasure.Erasures.forget>`, after the flush in flight, and loads in flight made
        stale (they may hold pre-erasure state)."""
        self._finish_inflight()
        self._generation += 1
        self.stats.replays += self.erasure.forget(erased, self._consumer, self._produce)

    # --- dropping partitions ------------------------------------------------------------------------
    def _drop_partitions(self, parts: set[int]) -> None:
        self._generation += 1  # loads in flight may predate a new owner's writes
        tracked = self.tracked
        tracked.remove_many(tracked.in_partitions(parts))
        self.metrics.stopped_partitions.set(len(tracked.stopped_partitions()))
        for p in parts:
            self.offsets.revoke(p)
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(str(p))
        self.metrics.tracked_viewers.set(len(tracked.states))

    # --- the hot path ------------------------------------------------------------------------------
    def _handle(self, msgs: list[Message]) -> None:
        decode = self.decoder.decode
        tracked = self.tracked
        states = tracked.states
        loading = tracked.loading
        mark = tracked.dirty.mark
        clock = self._event_clock
        mono = time.monotonic()
        changed_add = tracked.changed.add
        touched_add = tracked.touched.add
        vp = tracked.partition
        eof = self.offsets.eof
        bad: list[tuple[bytes | None, InputError]] = []
        last_offset: dict[int, int] = {}
        tally: Tally[str] = Tally()
        ages: list[float] = []
        wall = time.time()
        applied = seen = waiting = 0
        erased = self.erasure.erased
        first_offset: dict[int, int] = {}
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())  # type: ignore[arg-type]
                else:
                    log.warning("consumer error: %s", err)
                continue
            p: int = m.partition()  # type: ignore[assignment]  # set on every fetched message
            off: int = m.offset()  # type: ignore[assignment]
            if p not in last_offset:
                eof.discard(p)  # (an EOF later in this batch sets it again)
                first_offset[p] = off
            last_offset[p] = off
            value = m.value()
            try:
                ev = decode(value)
            except InputError as exc:
                bad.append((value, exc))
                continue
            seen += 1
            vid = ev.viewer_id
            if erased and vid in erased and ev.collector_ts <= erased[vid]:
                self.stats.erased_dropped += 1  # collected before its viewer was erased
                continue
            st = states.get(vid)
            if st is None:  # first sight: wait for the stored state
                queue = loading.get(vid)
                if queue is None:
                    loading[vid] = [(p, off, ev)]
                    tracked.to_load.add(vid)
                else:
                    queue.append((p, off, ev))
                waiting += 1
                continue
            if st.apply(ev):
                applied += 1
                mark(vid, p, off, mono)
                ct = ev.collector_ts
                if ct > clock.get(p, 0.0):
                    clock[p] = ct
                changed_add(vid)
                tally[ev.name] += 1
                ages.append(wall - ev.collector_ts)
            else:
                self.stats.duplicates += 1
                tracked.unfrozen.add(vid)  # a copy may have thawed it: freeze it again when quiet
            vp[vid] = p
            touched_add(vid)
        self.offsets.read(first_offset, last_offset, wall)
        self.stats.messages += seen + len(bad)
        self.stats.applied += applied
        tracked.waiting += waiting
        if tally:
            self.metrics.applied(tally)
            self.metrics.ages(ages)
        if bad:
            self._send_bad(bad)
        if tracked.waiting >= _MAX_WAITING:
            self._pause()

    # --- loading viewers seen for the first time ----------------------------------------------------
    def _start_load(self) -> None:
        ids = self.tracked.to_load
        self.tracked.to_load = set()
        self._load_job = (self._loader.submit(self.store.load, ids), ids, self._generation)

    def _poll_load(self, wait: bool = False) -> None:
        job = self._load_job
        if job is None or not (wait or job[0].done()):
            return
        self._load_job = None
        future, ids, generation = job
        try:
            found, erasures = future.result()
        except StoreError as exc:
            self.stats.load_failures += 1
            self._load_failures += 1
            delay = min(_MAX_BACKOFF_S, 0.5 * 2 ** (self._load_failures - 1))
            self._load_retry_at = time.monotonic() + delay
            log.warning("DynamoDB: loading %d viewers failed (%s); retrying in %.1fs", len(ids), exc, delay)
            self.tracked.to_load |= {v for v in ids if v in self.tracked.loading}
            return
        if self._load_failures:
            log.info("DynamoDB loads succeed again")
        self._load_failures = 0
        if generation != self._generation:  # a revocation happened meanwhile: load again
            self.tracked.to_load |= {v for v in ids if v in self.tracked.loading}
            return
        self.stats.loads += len(found)
        for vid, ms in erasures.items():  # erased before: their events up to then are past data
            self.erasure.note(vid, ms / 1000)
        tracked = self.tracked
        erased = self.erasure.erased
        window = self.reorder_window_s
        wall = time.time()
        tally: Tally[str] = Tally()
        ages: list[float] = []
        for vid in ids:
            queue = tracked.loading.pop(vid, None)
            if queue is None:
                continue  # its partition was revoked
            tracked.waiting -= len(queue)
            cut = erased.get(vid)
            if cut is not None:
                kept = [q for q in queue if q[2].collector_ts > cut]
                self.stats.erased_dropped += len(queue) - len(kept)
                if not kept:
                    continue  # nothing but the erased past: no profile
                queue = kept
            state = found.get(vid)
            st: ViewerState
            if state is None:
                st = ViewerState.new(vid, window)
            else:
                try:
                    st = ViewerState.load(vid, state, window)
                except ValueError as exc:
                    self._stop_unreadable(vid, queue, exc)
                    continue
                # what is stored was published before: only what changes from here on is news
                stored_profile = st.profile()
                tracked.pub_sig[vid] = _pub_key(_significant(stored_profile), stored_profile)
            tracked.states[vid] = st
            for _p, _off, ev in queue:
                if st.apply(ev):
                    self.stats.applied += 1
                    tally[ev.name] += 1
                    ages.append(wall - ev.collector_ts)
                else:
                    self.stats.duplicates += 1
            tracked.partition[vid] = queue[-1][0]
            tracked.mark_dirty(vid, queue[0][0], queue[0][1], time.monotonic())
            tracked.changed.add(vid)
            tracked.touched.add(vid)
        if tally:
            self.metrics.applied(tally)
            self.metrics.ages(ages)
        self.metrics.tracked_viewers.set(len(tracked.states))

    def _quiet_left(self, vid: str, p: int) -> float:
        """Seconds of event time until ``vid`` has been quiet for ``quiet_s`` (<= 0: it has)."""
        st = self.tracked.states.get(vid)
        newest = st.newest_ts if st is not None else None
        # event time: the newest collector time read from the partition, or now once it is read
        # to its end (a quiet partition; a lagging one must not make every viewer look quiet)
        clock = time.time() if p in self.offsets.eof else self._event_clock.get(p)
        if newest is None or clock is None:
            return self.quiet_s
        return self.quiet_s - (clock - newest)

    def _stop_unreadable(self, vid: str, queue: list[Queued], exc: Exception) -> None:
        """A stored state this version cannot read (a newer or corrupt format) must never be
        overwritten: the viewer's events stay queued (holding its partition's commits at the
        first of them) and the partition is paused, loudly, until an operator runs a version
        that reads it (or removes the item). Other partitions go on."""
        p = queue[0][0]
        self.tracked.loading[vid] = queue
        self.tracked.waiting += len(queue)
        first = vid not in self.tracked.unreadable
        self.tracked.unreadable[vid] = p
        if first:
            self.stats.unreadable += 1
            self.metrics.unreadable_states.inc()
        consumer = self._consumer
        if consumer is not None and p in self.offsets.assigned:
            with contextlib.suppress(KafkaException):
                consumer.pause([TopicPartition(self.topic, p)])
        self.metrics.stopped_partitions.set(len(self.tracked.stopped_partitions()))
        log.error(
            "stored state of viewer %s cannot be read by this version (%s): partition %d is "
            "stopped and nothing of the viewer is written; run a version that reads it, or "
            "delete the item, then restart",
            vid,
            exc,
            p,
        )

    def _send_bad(self, bad: list[tuple[bytes | None, InputError]]) -> None:
        producer = self._producer
        assert producer is not None
        for value, exc in bad:
            row = self.decoder.bad_row(value, exc)
            self._produce(self.settings.topic_bad, None, badrows.encode(row))
            self.metrics.bad(exc.reason)
        self.stats.bad += len(bad)
        log.warning(
            "%d unparseable messages sent to %s (last: %s)", len(bad), self.settings.topic_bad, bad[-1][1]
        )

    def _produce(
        self, topic: str, key: bytes | None, value: bytes | None, timestamp_ms: int = 0, partition: int = -1
    ) -> None:
        producer = self._producer
        assert producer is not None
        while True:
            try:
                producer.produce(topic, value=value, key=key, timestamp=timestamp_ms, partition=partition)
                return
            except BufferError:
                producer.poll(0.05)

    # --- publishing --------------------------------------------------------------------------------
    def _publish(self) -> None:
        """Publish the viewers changed since the last call (lvp.changes): a full profile when a
        significant field changed, else the viewer waits for the next touches message. A new
        viewer or a status change (and so a history entry) makes the viewer's write due
        ``LVP_STATUS_WRITE_DELAY_S`` later (at the next flush with 0); other
        significant changes (counters, ads) are on the live view at once and in DynamoDB with the
        viewer's next write."""
        tracked = self.tracked
        if not tracked.changed or self._producer is None:
            return
        topic = self.settings.topic_changes
        states = tracked.states
        dumps = orjson.dumps
        pub_sig = tracked.pub_sig
        dirty, touch = tracked.dirty, tracked.touch_pending
        parts = self._changes_partitions
        delay = self.settings.status_write_delay_s
        due = time.monotonic() + delay if delay > 0 else None
        n = 0
        for vid in tracked.changed:
            st = states.get(vid)
            if st is None:
                continue
            prof = st.profile_view()  # (read here only: no copy)
            packed = _pub_key(_significant(prof), prof)
            last = pub_sig.get(vid)
            if last == packed:
                touch[vid] = [vid, *_touch_values(prof)]  # (= touch_patch: every field is there)
                st.settle()  # (engine: keep a packed viewer until its next event)
                continue
            key = vid.encode()
            self._produce(topic, key, dumps(prof), partition=partition_for(key, parts) if parts else -1)
            pub_sig[vid] = packed
            touch.pop(vid, None)
            st.settle()
            if vid in dirty and (last is None or last & _STATUS_MASK != packed & _STATUS_MASK):
                # a new viewer or a status change: written with its history LVP_STATUS_WRITE_DELAY_S
                # later, with every change meanwhile (an ad break's end, a stall's end...)
                tracked.status_changed(vid, due)
            n += 1
        tracked.changed.clear()
        self.stats.published += n
        if n:
            self.metrics.published.labels("profile").inc(n)
        self._producer.poll(0)

    def _publish_touches(self) -> None:
        """One touches message per changes-topic partition for the viewers whose changes since
        their last publication are touch fields only (position, last_seen, play time)."""
        tracked = self.tracked
        if not tracked.touch_pending or self._producer is None:
            return
        pending = tracked.touch_pending
        tracked.touch_pending = {}
        parts = self._changes_partitions
        states = tracked.states
        topic = self.settings.topic_changes
        if not parts:  # partitions unknown: full profiles, as before touches existed
            for vid in pending:
                st = states.get(vid)
                if st is not None:
                    self._produce(topic, vid.encode(), orjson.dumps(st.profile()))
            return
        rows: dict[int, list[list[Any]]] = {}
        for vid, row in pending.items():
            if vid in states:
                rows.setdefault(partition_for(vid.encode(), parts), []).append(row)
        n = messages = 0
        for p, group in rows.items():
            key = TOUCH_KEY_PREFIX + str(p).encode()
            for i in range(0, len(group), _TOUCHES_PER_MESSAGE):
                chunk = group[i : i + _TOUCHES_PER_MESSAGE]
                self._produce(topic, key, encode_touches(chunk), partition=p)
                n += len(chunk)
                messages += 1
        self.stats.touches += n
        self.metrics.published.labels("touches").inc(messages)
        self.metrics.touched.inc(n)
        self._producer.poll(0)

    # --- flushing ----------------------------------------------------------------------------------
    def _take_due(self, now: float) -> dict[str, str]:
        """The dirty viewers to write now, with why (WRITE_REASONS): every one after the end of
        input or before a revocation/shutdown; else those with significant changes, those dirty
        for ``write_interval_s`` and those quiet for ``quiet_s``."""
        tracked = self.tracked
        dirty = tracked.dirty
        if self._flush_all:
            self._flush_all = False
            return dict.fromkeys(dirty, "final")
        tracked.ripe_status_writes(now)
        due: dict[str, str] = {v: "change" for v in tracked.urgent if v in dirty}
        for vid, why in dirty.due(now, self._quiet_left).items():
            due.setdefault(vid, why)
        return due

    def _snapshot(self, due: dict[str, str] | None = None) -> _Flush:
        """Take the viewers in ``due`` (default: every dirty viewer) out of the dirty set, with
        their profiles, states and history changes, and submit their write."""
        tracked = self.tracked
        if due is None:
            due = dict.fromkeys(tracked.dirty, "final")
        vids = set(due)
        since: dict[str, tuple[int, int]] = {}
        for v in vids:
            first = tracked.dirty.pop(v)
            if first is not None:
                since[v] = first
        tracked.written(vids)
        written = self.stats.written
        for why in due.values():
            written[why] += 1
        for why, n in Tally(due.values()).items():
            self.metrics.writes.labels(why).inc(n)
        writes: list[ProfileWrite] = []
        hist = tracked.pending_hist
        erased = self.erasure.erased
        # earliest unstored events first: a flush that fails part-way still advances the commits
        for vid in sorted(vids, key=lambda v: since[v][1] if v in since else -1):
            st = tracked.states.get(vid)
            if st is None:
                continue
            puts, deletes = st.history_changes()  # before dump(): the stored state knows them
            for h in puts:
                hist[(vid, h.seq)] = h
            for seq in deletes:
                hist[(vid, seq)] = None
            cut = erased.get(vid) if erased else None
            writes.append(
                ProfileWrite(vid, st.profile(), st.dump(), None if cut is None else int(cut * 1000))
            )
            st.compact()
        tracked.unfrozen |= vids
        tracked.flushed |= vids
        tracked.pending_hist = {}
        offsets = self._committable()
        flush = _Flush(vids, hist, offsets, since, time.monotonic(), len(writes) + len(hist))
        if writes or hist:
            flush.future = self._pool.submit(self._write, writes, hist)
        return flush

    def _committable(self) -> dict[int, int]:
        """Next offset per assigned partition, held back to the first event still waiting for
        its viewer's state and to the first event of a dirty viewer (not in a flush) that is
        not stored yet."""
        return self.offsets.committable(self.tracked.waiting_holds(), self.tracked.dirty.earliest())

    def _write(self, writes: list[ProfileWrite], hist: dict[HistKey, Any]) -> int:
        puts = [h for h in hist.values() if h is not None]
        deletes = [k for k, h in hist.items() if h is None]
        return self.store.write(writes, puts, deletes)

    def _start_flush(self, now: float) -> None:
        due = self._take_due(now)
        if not (due or self.tracked.pending_hist or self._uncommitted()):
            return
        self._inflight = self._snapshot(due)
        if self._inflight.future is None:  # nothing to write, offsets to commit
            self._complete(self._inflight, None)

    def _poll_flush(self) -> None:
        f = self._inflight
        if f is not None and f.future is not None and f.future.done():
            self._complete(f, f.future.exception())

    def _finish_inflight(self, commit: bool = True) -> None:
        f = self._inflight
        if f is None:
            return
        exc: BaseException | None = None
        if f.future is not None:
            try:
                f.future.result()
            except BaseException as e:
                exc = e
        if commit:
            self._complete(f, exc)
        else:
            self._inflight = None

    def _complete(self, f: _Flush, exc: BaseException | None) -> bool:
        self._inflight = None
        elapsed = time.monotonic() - f.started
        if exc is not None:
            self._restore_unwritten(f, exc)
            return False
        if f.requests:
            self.metrics.flush_size.observe(f.requests)
            self.metrics.flush_seconds.observe(elapsed)
            self.stats.flushes += 1
            self.stats.writes += f.requests
        if self._failures:
            log.info("DynamoDB writes succeed again")
        self._failures = 0
        self._retry_at = 0.0
        self._commit(f.offsets)
        return True

    def _restore_unwritten(self, f: _Flush, exc: BaseException) -> None:
        """After a failed flush: what was not written becomes dirty / pending again (with its
        first unstored offsets); the rest stays written. Commits what is stored."""
        tracked = self.tracked
        if isinstance(exc, WriteFailed):  # the store says exactly what was not written
            hist = {k: v for k, v in f.hist.items() if k in exc.unwritten_history}
            failed = {v for v in exc.unwritten_profiles if v in f.vids} | {vid for vid, _seq in hist}
            written = exc.written
        else:
            hist, failed, written = f.hist, f.vids, 0
        states, vp = tracked.states, tracked.partition
        for vid in failed:
            if vid not in states:  # its partition was revoked meanwhile
                continue
            # (no first offset known: hold its whole partition back); retried at the next flush
            first = f.since.get(vid) or (vp.get(vid, -1), -1)
            tracked.mark_dirty(vid, *first, time.monotonic(), urgent=True)
        for k, v in hist.items():
            tracked.pending_hist.setdefault(k, v)
        # what is stored: each partition up to its first event whose write failed
        committable = self._committable()
        self._commit({p: min(o, committable.get(p, o)) for p, o in f.offsets.items()})
        if written:
            self.stats.partial_flushes += 1
            self.stats.writes += written
            self._failures = 0  # DynamoDB takes writes, just not all: retry soon, not later and later
        self._store_failed(
            f"flush of {f.requests} writes failed ({written} written, {len(failed)} viewers and "
            f"{len(hist)} history changes left for the next flush): {exc}"
        )
        self.stats.flush_failures += 1  # last: a test seeing it sees the commit made

    def _flush_now(self, attempts: int = 1) -> bool:
        """Synchronous flush + commit (revocation, shutdown), retried ``attempts`` times."""
        for i in range(attempts):
            self.heartbeat = time.monotonic()
            if not (self.tracked.dirty or self.tracked.pending_hist or self._uncommitted()):
                return True
            f = self._snapshot()
            self._inflight = f
            exc: BaseException | None = None
            if f.future is not None:
                try:
                    f.future.result()
                except BaseException as e:
                    exc = e
            if self._complete(f, exc) and not self._uncommitted():
                return True
            if i + 1 < attempts:
                time.sleep(min(2.0, 0.25 * 2**i))
        return not (self.tracked.dirty or self.tracked.pending_hist or self._uncommitted())

    def _uncommitted(self) -> bool:
        return self.offsets.uncommitted(self._committable())

    def _commit(self, offsets: dict[int, int]) -> bool:
        consumer, producer = self._consumer, self._producer
        if consumer is None or producer is None:
            return False
        todo = self.offsets.to_commit(offsets)
        if not todo:
            return True
        remaining = producer.flush(_PRODUCER_FLUSH_S)  # bad rows and changes out before the commit
        if remaining:
            log.warning("%d produced messages still undelivered; commit postponed", remaining)
            return False
        tps = [TopicPartition(self.topic, p, o) for p, o in todo.items()]
        try:
            consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            log.warning("offset commit failed (retried with the next flush): %s", exc)
            return False
        self.offsets.mark_committed(todo)
        self.stats.commits += 1
        return True

    def _store_failed(self, message: str) -> None:
        self._failures += 1
        delay = min(_MAX_BACKOFF_S, 0.5 * 2 ** (self._failures - 1))
        self._retry_at = time.monotonic() + delay
        log.warning("DynamoDB: %s; retrying in %.1fs", message, delay)
        if len(self.tracked.urgent) >= self.settings.flush_max_dirty:
            self._pause()

    def _must_pause(self) -> bool:
        """Backpressure: too many viewers dirty while DynamoDB refuses writes, or too many events
        waiting for viewer states."""
        return (self._failures > 0 and len(self.tracked.urgent) >= self.settings.flush_max_dirty) or (
            self.tracked.waiting - self.tracked.unreadable_waiting() >= _MAX_WAITING
        )

    def _pause(self) -> None:
        consumer = self._consumer
        if consumer is None or self._paused:
            return
        parts = [TopicPartition(self.topic, p) for p in self.offsets.assigned]
        if parts:
            consumer.pause(parts)
        self._paused = True
        log.warning("consumption paused (backpressure) until DynamoDB catches up")

    def _resume(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        stopped = self.tracked.stopped_partitions()
        parts = [TopicPartition(self.topic, p) for p in self.offsets.assigned if p not in stopped]
        if parts:
            consumer.resume(parts)
        self._paused = False
        log.info("consumption resumed")

    # --- housekeeping ------------------------------------------------------------------------------
    def _update_lag(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        for p in list(self.offsets.assigned):
            try:
                _lo, hi = consumer.get_watermark_offsets(TopicPartition(self.topic, p), cached=True)
            except KafkaException:
                continue
            if hi is None or hi < 0:
                continue
            pos = self.offsets.next_offsets.get(p, self.offsets.committed.get(p, -1))
            if pos < 0:
                continue
            self.metrics.consumer_lag.labels(str(p)).set(max(0, hi - pos))
        self.metrics.tracked_viewers.set(len(self.tracked.states))

    def total_lag(self) -> int:
        lag = 0
        for metric in self.metrics.consumer_lag.collect():
            for sample in metric.samples:
                lag += int(sample.value)
        return lag

    def _report_progress(self, note: str = "") -> None:
        s = self.stats
        line = (
            f"{'rebuild' if self.rebuild else 'profiles'}: {s.applied} events applied, "
            f"{s.duplicates} duplicates, "
            f"{s.bad} bad, {len(self.tracked.states)} viewers, {s.writes} writes, lag {self.total_lag()}"
        )
        self._say(line + (f" — {note}" if note else ""))

    def _evict(self) -> None:
        """Forget viewers untouched for ``evict_after_s`` (their state is in DynamoDB)."""
        tracked = self.tracked
        if self._inflight is None and not self._failures:
            keep = tracked.touched | tracked.touched_prev | set(tracked.dirty) | tracked.changed
            self.stats.evicted += tracked.remove_many([v for v in tracked.states if v not in keep])
            self.metrics.tracked_viewers.set(len(tracked.states))
        tracked.touched_prev = tracked.touched
        tracked.touched = set()
        self.erasure.expire(time.time())

    def freeze_quiet(self) -> int:
        """Freeze every viewer flushed before the previous pass and unchanged since (called
        every ``freeze_after_s``, so it was quiet for at least that long). Returns how many."""
        tracked = self.tracked
        busy = tracked.flushed | set(tracked.dirty) | tracked.changed
        n = 0
        for vid in tracked.unfrozen - busy:
            st = tracked.states.get(vid)
            if st is not None:
                st.compact(freeze=True)
                n += 1
        tracked.unfrozen &= busy
        tracked.flushed = set()
        self.stats.frozen += n
        return n

    def _caught_up(self) -> bool:
        """Every assigned partition read to its end (but those stopped on an unreadable state),
        and no viewer waiting for its stored state."""
        tracked, offsets = self.tracked, self.offsets
        return (
            bool(offsets.assigned)
            and offsets.assigned - tracked.stopped_partitions() <= offsets.eof
            and self._load_job is None
            and all(v in tracked.unreadable for v in tracked.loading)
        )

    def _at_end(self) -> bool:
        tracked = self.tracked
        return (
            self._caught_up()
            and self._inflight is None
            and not tracked.dirty
            and not tracked.pending_hist
            and not tracked.changed
            and not tracked.touch_pending
            and not tracked.loading
            and not self._uncommitted()
        )
