"""The live service: the view fed by the changes reader, the push loop that builds one delta
per push and broadcasts it, snapshots and stats."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from lvp.config import Settings
from viewer.changes import Change, ChangesReader
from viewer.hub import Hub, frame
from viewer.live import DEFAULT_LIMIT, LiveView
from viewer.metrics import ViewerMetrics
from viewer.stats import ActiveSeries, EventRate, build_stats

log = logging.getLogger("lvp.viewer.service")

IDLE_TICK_S = 1.0
STATS_CACHE_S = 1.0
SNAPSHOT_CACHE_KEYS = 8


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
        self.view = LiveView(settings.active_timeout_s, clock)
        self.hub = Hub(client_queue_frames=client_queue_frames, ring_frames=ring_frames)
        self.rate = EventRate()
        self.series = ActiveSeries()
        self.loaded = False
        self.reader: ChangesReader | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._snap_seq = -1
        self._snap_cache: dict[tuple[int, str | None], bytes] = {}
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
        for viewer_id, profile in changes:
            total += self.view.apply(viewer_id, profile, now)
        if self.loaded:
            self.rate.add(total, now)
            # push latency is measured for changes that arrive live, not for the catch-up
            self._fresh.update(viewer_id for viewer_id, profile in changes if profile is not None)
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
        if not self.view.has_changes():
            return False
        seq = self.hub.next_seq()
        delta = self.view.take_delta(seq)
        data = frame("delta", seq, delta)
        dropped = self.hub.publish(seq, data)
        pushed_at = self.clock()
        if self._fresh:
            observe = self.metrics.push_latency.observe
            for profile in delta["upsert"]:
                if profile["viewer_id"] in self._fresh:
                    entry_seen = self.view.last_seen_of(profile["viewer_id"])
                    if entry_seen is not None:
                        observe(max(0.0, pushed_at - entry_seen))
            self._fresh = set()
        self.metrics.pushes.inc()
        if dropped:
            self.metrics.sse_dropped.inc(dropped)
            log.info("dropped %d SSE clients that fell behind", dropped)
        self.metrics.sse_clients.set(len(self.hub.clients))
        return True

    # --- reading ----------------------------------------------------------------------------
    def snapshot(self, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> dict[str, Any]:
        return self.view.snapshot(self.hub.seq, limit, cursor)

    def snapshot_frame(self, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> bytes:
        """The ``snapshot`` SSE frame at the current seq; built once per seq and page."""
        seq = self.hub.seq
        if self._snap_seq != seq:
            self._snap_seq = seq
            self._snap_cache = {}
        key = (limit, cursor)
        data = self._snap_cache.get(key)
        if data is None:
            t0 = time.perf_counter()
            data = frame("snapshot", seq, self.view.snapshot(seq, limit, cursor))
            self.metrics.snapshot_build.observe(time.perf_counter() - t0)
            if cursor is None and len(self._snap_cache) < SNAPSHOT_CACHE_KEYS:
                self._snap_cache[key] = data
        return data

    def snapshot_json(self, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> bytes:
        t0 = time.perf_counter()
        data = orjson.dumps(self.snapshot(limit, cursor))
        self.metrics.snapshot_build.observe(time.perf_counter() - t0)
        return data

    def stats(self) -> dict[str, Any]:
        now = self.clock()
        if self._stats is None or now - self._stats_at >= STATS_CACHE_S:
            self._stats = build_stats(
                now=now,
                counts=self.view.counts(),
                profiles=list(self.view.profiles()),
                series=self.series,
                rate=self.rate,
            )
            self._stats_at = now
        return self._stats

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
