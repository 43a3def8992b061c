"""The live service: the view fed by the changes reader, the push loop, snapshots and stats.

Each SSE client subscribes to a window (:class:`viewer.live.Subscription`: a page of rows,
optionally one status or a search). Clients with equal subscriptions form one hub topic. A push
builds one frame per topic that has something new — the counts, plus its rows that entered,
changed or left, plus compact touch patches (position, last_seen, ...) of its rows — and encodes
it once for all of that topic's clients. So a push carries at most a page of rows however many
viewers are active, and the push loop's CPU grows with changes and distinct windows, not with
clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

import orjson

from lvp.changes import TOUCH_FIELDS, Change
from lvp.config import Settings
from lvp.enriched import iso
from viewer.changes import ChangesReader
from viewer.hub import Client, Hub, frame
from viewer.live import DEFAULT_LIMIT, ENDED_KEEP_S, LiveView, Subscription
from viewer.metrics import ViewerMetrics
from viewer.stats import ActiveSeries, EventRate, ad_funnel, build_stats, qoe

log = logging.getLogger("lvp.viewer.service")

IDLE_TICK_S = 1.0
STATS_CACHE_S = 1.0
SNAPSHOT_CACHE_KEYS = 8
# The audience aggregates (QoE, ad funnel) walk every active profile: above this many viewers they
# are computed in a worker thread (the loop keeps pushing), at most every STATS_COST_FACTOR x
# their own duration (~10 % of a core at most; every ~15 s at 100,000 viewers).
STATS_OFFLOAD_ABOVE = 5000
STATS_COST_FACTOR = 10.0
TOPIC_LINGER_S = 60.0  # a window nobody watches is kept this long, for Last-Event-ID resumes


class LiveService:
    def __init__(
        self,
        settings: Settings,
        metrics: ViewerMetrics,
        *,
        push_interval_s: float | None = None,
        client_queue_frames: int = 64,
        ring_frames: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.push_interval_s = settings.push_interval_s if push_interval_s is None else push_interval_s
        # an ended viewer is answered from here until DynamoDB has its end (the status write delay)
        self.view = LiveView(
            settings.active_timeout_s, clock, ended_keep_s=ENDED_KEEP_S + settings.status_write_delay_s
        )
        self.hub = Hub(client_queue_frames=client_queue_frames, ring_frames=ring_frames)
        self.rate = EventRate()
        self.series = ActiveSeries()
        self.loaded = False
        self.reader: ChangesReader | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._snap_seq = -1
        self._snap_cache: dict[Subscription, bytes] = {}
        self._windows: dict[Subscription, list[str]] = {}  # the rows each topic's clients hold
        self._sent_counts: dict[Subscription, dict[str, Any]] = {}
        self._totals: dict[Subscription, int] = {}
        self._heavy: dict[str, Any] | None = None  # {"qoe": ..., "ads": ...}
        self._heavy_at = 0.0
        self._heavy_every = STATS_CACHE_S
        self._heavy_job: asyncio.Future[None] | None = None
        self._stats_at = 0.0
        self._stats: dict[str, Any] | None = None
        self._fresh: set[str] = set()
        self._logged_error: str | None = None

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self, read_changes: bool = True) -> None:
        self._wake = asyncio.Event()
        if read_changes:
            self.reader = ChangesReader(self.settings, self.on_batch, self.on_loaded)
            self.reader.start(asyncio.get_running_loop())
        self._task = asyncio.create_task(self.run(), name="lvp-viewer-push")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.reader is not None:
            await asyncio.to_thread(self.reader.stop)
        self.hub.close_all()
        self.metrics.sse_clients.set(0)

    # --- input (called on the loop by the reader thread) ------------------------------------
    def on_batch(self, changes: list[Change], bad: int = 0) -> None:
        now = self.clock()
        total = 0
        view = self.view
        fresh = self._fresh if self.loaded else None
        for change in changes:
            if change.kind == "touches":
                if change.touches:
                    total += view.touch(change.touches, now)
                    if fresh is not None:
                        fresh.update(change.touches)
            elif change.viewer_id is not None:
                total += view.apply(change.viewer_id, change.profile, now)
                # push latency is measured for changes that arrive live, not for the catch-up
                if fresh is not None and change.profile is not None:
                    fresh.add(change.viewer_id)
        if self.loaded:
            self.rate.add(total, now)
        if changes:
            self.metrics.changes.labels("applied").inc(len(changes))
        if bad:
            self.metrics.changes.labels("bad").inc(bad)
            log.warning("ignored %d unreadable change messages", bad)
        if self._wake is not None:
            self._wake.set()

    def on_loaded(self) -> None:
        self.loaded = True
        self.rate.start(self.clock())
        log.info("live view loaded: %d active viewers", len(self.view))
        if self._wake is not None:
            self._wake.set()

    # --- the push loop ----------------------------------------------------------------------
    async def run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        last_push = float("-inf")
        while True:
            if not self.view.has_changes():
                timeout = IDLE_TICK_S
                nxt = self.view.next_expiry()
                if nxt is not None:
                    timeout = min(timeout, max(0.001, nxt - self.clock() + 0.001))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            wait = last_push + self.push_interval_s - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                if self.tick():
                    last_push = loop.time()
            except Exception:  # a bad tick must not stop the live view
                log.exception("push failed")
                await asyncio.sleep(self.push_interval_s)

    def tick(self, now: float | None = None) -> bool:
        """Expire, sample, and push one delta if anything changed. True when pushed."""
        now = self.clock() if now is None else now
        self.view.expire(now)
        if self.loaded:  # before that the count is still climbing through the topic
            self.series.sample(now, len(self.view))
        counts = self.view.counts()
        for status, n in counts["by_status"].items():
            self.metrics.active_viewers.labels(status).set(n)
        for name in self.hub.forget_idle(now, TOPIC_LINGER_S):
            if isinstance(name, Subscription):
                self._windows.pop(name, None)
                self._sent_counts.pop(name, None)
                self._totals.pop(name, None)
        if not self.view.has_changes():
            return False
        seq = self.hub.next_seq()
        upserted, touched, removed = self.view.take_changes()
        stream_counts = self.view.stream_counts(counts)
        generated_at = iso(now)
        frames: dict[Hashable, bytes] = {}
        shown: set[str] = set()  # fresh viewers whose change a frame carries
        changed = upserted | removed
        for sub in list(self.hub.topics):
            if not isinstance(sub, Subscription):
                continue
            delta = self._window_delta(sub, upserted, touched, changed, stream_counts)
            if delta is None:
                continue
            delta["seq"] = seq
            delta["generated_at"] = generated_at
            frames[sub] = frame("delta", seq, delta)
            if self._fresh and delta["touch"]:
                shown.update(row[0] for row in delta["touch"])
        dropped = self.hub.publish_many(seq, frames)
        pushed_at = self.clock()
        if self._fresh:
            # every significant change shows in the counts of this push; a touch when a window
            # carried it
            observe = self.metrics.push_latency.observe
            last_seen_of = self.view.last_seen_of
            for viewer_id in (upserted & self._fresh) | (shown & self._fresh):
                entry_seen = last_seen_of(viewer_id)
                if entry_seen is not None:
                    observe(max(0.0, pushed_at - entry_seen))
            self._fresh = set()
        self.metrics.pushes.inc()
        if dropped:
            self.metrics.sse_dropped.inc(dropped)
            log.info("dropped %d SSE clients that fell behind", dropped)
        self.metrics.sse_clients.set(self.hub.client_count())
        return True

    def _window_delta(
        self,
        sub: Subscription,
        upserted: set[str],
        touched: set[str],
        changed: set[str],
        counts: dict[str, Any],
    ) -> dict[str, Any] | None:
        """What the clients of ``sub`` need since the last push (None: nothing): its rows that
        entered or changed (full profiles), left (ids), were touched (patches), and the counts.
        A search window is recomputed (a scan) only when a change concerns it."""
        view = self.view
        old = self._windows.get(sub, [])
        if sub.q is not None and sub in self._totals and not view.affects(sub, changed):
            ids, total = old, self._totals[sub]
        else:
            ids, total = view.window(sub)
        self._windows[sub] = ids
        self._totals[sub] = total
        old_set = set(old)
        new_set = set(ids)
        get = view.get
        upsert = [p for v in ids if (v not in old_set or v in upserted) and (p := get(v)) is not None]
        remove = sorted(v for v in old if v not in new_set)
        touch: list[list[Any]] = []
        if touched:
            for v in ids:
                if v in touched and v in old_set and v not in upserted:
                    p = get(v)
                    if p is not None:
                        touch.append([v, *(p[f] for f in TOUCH_FIELDS)])
        counts = {**counts, "total": total}
        if not upsert and not remove and not touch and self._sent_counts.get(sub) == counts:
            return None
        self._sent_counts[sub] = counts
        delta: dict[str, Any] = {"counts": counts, "upsert": upsert, "remove": remove, "touch": touch}
        if touch:
            delta["touch_fields"] = TOUCH_FIELDS
        return delta

    # --- subscribing --------------------------------------------------------------------------
    def subscribe(self, key: str, sub: Subscription, last_id: str | None) -> tuple[Client, list[bytes]]:
        """Connect a client to ``sub``'s topic. Returns it and its first frames: the deltas it
        missed when ``last_id`` is still in the topic's ring, else a snapshot of the window."""
        missed = self.hub.frames_since(last_id, sub)
        client = self.hub.connect(key, sub)
        if missed is not None:
            return client, missed
        return client, [self.snapshot_frame(sub)]

    def snapshot_frame(self, sub: Subscription | None = None) -> bytes:
        """The ``snapshot`` SSE frame of ``sub``'s window at the current seq: the rows its topic
        holds since the last push (so the next delta applies to exactly them), the counts.
        Built once per seq and window."""
        sub = Subscription() if sub is None else sub
        seq = self.hub.seq
        if self._snap_seq != seq:
            self._snap_seq = seq
            self._snap_cache = {}
        data = self._snap_cache.get(sub)
        if data is None:
            t0 = time.perf_counter()
            ids, total = self.view.window(sub)
            held = self._windows.get(sub)
            if held is None:
                self._windows[sub] = held = ids
                self._totals[sub] = total
            get = self.view.get
            snap: dict[str, Any] = {"generated_at": iso(self.clock()), "seq": seq}
            snap.update(self.view.stream_counts())
            snap["total"] = total
            snap["viewers"] = [p for v in held if (p := get(v)) is not None]
            snap["next_cursor"] = None
            snap["touch_fields"] = TOUCH_FIELDS
            data = frame("snapshot", seq, snap)
            self.metrics.snapshot_build.observe(time.perf_counter() - t0)
            if len(self._snap_cache) < SNAPSHOT_CACHE_KEYS:
                self._snap_cache[sub] = data
        return data

    # --- reading ----------------------------------------------------------------------------
    def snapshot(self, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> dict[str, Any]:
        return self.view.snapshot(self.hub.seq, limit, cursor)

    def snapshot_json(self, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> bytes:
        t0 = time.perf_counter()
        data = orjson.dumps(self.snapshot(limit, cursor))
        self.metrics.snapshot_build.observe(time.perf_counter() - t0)
        return data

    def stats(self) -> dict[str, Any]:
        now = self.clock()
        self._refresh_heavy(now)
        if self._stats is None or now - self._stats_at >= STATS_CACHE_S:
            self._stats = build_stats(
                now=now, counts=self.view.counts(), profiles=[], series=self.series, rate=self.rate
            )
            self._stats.update(self._heavy or {})
            self._stats_at = now
        return self._stats

    def _refresh_heavy(self, now: float) -> None:
        """QoE and the ad funnel over every active profile: here for a small view, in a worker
        thread for a large one (the answer meanwhile is the previous one)."""
        fresh = self._heavy is not None and now - self._heavy_at < self._heavy_every
        if self._heavy_job is not None or fresh:
            return
        profiles = list(self.view.profiles())
        self._heavy_at = now

        def build() -> None:
            t0 = time.perf_counter()
            heavy = {"qoe": qoe(profiles), "ads": ad_funnel(profiles)}
            self._heavy_every = max(STATS_CACHE_S, STATS_COST_FACTOR * (time.perf_counter() - t0))
            self._heavy = heavy

        if len(profiles) <= STATS_OFFLOAD_ABOVE:
            build()
            return
        if self._heavy is None:
            self._heavy = {"qoe": qoe([]), "ads": ad_funnel([])}
        job = asyncio.get_running_loop().run_in_executor(None, build)
        self._heavy_job = job

        def done(fut: asyncio.Future[None]) -> None:
            self._heavy_job = None
            self._stats = None  # the next answer carries the new aggregates
            if not fut.cancelled() and fut.exception() is not None:
                log.warning("stats failed: %s", fut.exception())

        job.add_done_callback(done)

    def health(self) -> dict[str, Any]:
        """Public: liveness only. No counts (the exact active count would undo the noise of
        /api/public/stats) and no reader detail (it may name brokers): the detail is logged."""
        error = self.reader.error if self.reader else None
        if error and error != self._logged_error:
            log.warning("changes reader: %s", error)
        self._logged_error = error
        return {
            "status": "ok",
            "loaded": self.loaded,
            "reader_error": "the changes topic cannot be read" if error else None,
        }
