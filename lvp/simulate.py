"""`lvp simulate`: synthetic viewers over the real tracker protocol.

Each viewer is a scripted but random media session (startup, pre-roll ad pod with skips and
clicks, play, pauses, seeks, buffering, a mid-roll, pings, percent progress, end — some
abandon), emitted as Snowplow media plugin v4 events with the media_player / session / ad
entities the JavaScript tracker sends. Events of many viewers are packed into tp2 POST batches
on keep-alive connections. 503/429 answers are honoured (Retry-After) and retried — an event is
never dropped — and so are failed connections (a collector restarting), until the collector has
been unreachable for ``--give-up-after`` seconds: then the run stops with exit 1 and says so.
``--expect FILE`` writes each viewer's raw ids, pseudonym and expected final status as JSON
Lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from lvp.cli import settings_from_args
from lvp.config import ConfigError, Settings
from lvp.events import (
    CONTEXTS_SCHEMA as CONTEXTS,
)
from lvp.events import (
    MEDIA_AD_BREAK_SCHEMA as AD_BREAK,
)
from lvp.events import (
    MEDIA_AD_SCHEMA as AD,
)
from lvp.events import (
    MEDIA_EVENT_SCHEMA as MEDIA,
)
from lvp.events import (
    MEDIA_PLAYER_SCHEMA as PLAYER,
)
from lvp.events import (
    MEDIA_SESSION_SCHEMA as SESSION,
)
from lvp.events import (
    PAYLOAD_DATA_SCHEMA as PAYLOAD_DATA,
)
from lvp.events import (
    UNSTRUCT_SCHEMA as UNSTRUCT,
)
from lvp.events import (
    WEB_PAGE_SCHEMA as WEB_PAGE,
)

TP2_PATH = "/com.snowplowanalytics.snowplow/tp2"

TITLES = ("Big Stream Demo", "Match Highlights", "Nature: The Coast", "Evening News", "Cooking Live")
USER_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 "
    "Chrome/76.0.3809.146 TV Safari/537.36",
)


Step = tuple[float, str, dict[str, Any] | None]


# --------------------------------------------------------------------------------------------
# one viewer's media session
# --------------------------------------------------------------------------------------------
@dataclass
class Viewer:
    """A simulated viewer: its ids, player model and running media session stats."""

    index: int
    rng: random.Random
    app_id: str
    duid: str = field(default_factory=lambda: str(uuid.uuid4()))
    uid: str = ""
    title: str = ""
    duration: float = 0.0
    useragent: str = ""
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    page_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # player model
    position: float = 0.0
    paused: bool = True
    ended: bool = False
    status: str = "idle"  # the expected profile status after the last event sent
    ad: dict[str, Any] | None = None
    ad_break: dict[str, Any] | None = None
    started_at: str = ""
    stats: dict[str, float] = field(default_factory=dict)
    events_sent: int = 0
    abandoned: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.title = self.rng.choice(TITLES)
        self.duration = float(self.rng.choice((120, 300, 600, 1800)))
        self.useragent = self.rng.choice(USER_AGENTS)
        if self.rng.random() < 0.6:
            self.uid = f"user-{self.index}-{uuid.uuid4().hex[:8]}@example.com"
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())

    # -- protocol --------------------------------------------------------------------------
    def event(self, name: str, data: dict[str, Any] | None = None) -> dict[str, str]:
        """One payload_data item for media event ``name`` (or ``page_view``)."""
        now_ms = str(int(time.time() * 1000))
        entities: list[dict[str, Any]] = [{"schema": WEB_PAGE, "data": {"id": self.page_id}}]
        item: dict[str, str] = {
            "eid": str(uuid.uuid4()), "tv": "lvp-sim-0.1.0", "tna": "sim", "aid": self.app_id,
            "p": "web", "dtm": now_ms, "stm": now_ms, "duid": self.duid, "sid": self.session_id,
            "vid": "1", "url": f"https://demo.example/watch/{self.index}", "ua": self.useragent,
            "lang": "en-US", "res": "1920x1080", "cookie": "1", "tz": "Europe/London",
        }  # fmt: skip
        if self.uid:
            item["uid"] = self.uid
        if name == "page_view":
            item["e"] = "pv"
            item["page"] = self.title
        else:
            item["e"] = "ue"
            item["ue_pr"] = orjson.dumps(
                {"schema": UNSTRUCT, "data": {"schema": MEDIA.format(name), "data": data or {}}}
            ).decode()
            entities += self.media_entities()
        item["co"] = orjson.dumps({"schema": CONTEXTS, "data": entities}).decode()
        self.events_sent += 1
        self.counts[name] = self.counts.get(name, 0) + 1
        return item

    def media_entities(self) -> list[dict[str, Any]]:
        player = {
            "currentTime": round(self.position, 3), "duration": self.duration, "paused": self.paused,
            "ended": self.ended, "label": self.title, "mediaType": "video", "playerType": "html5",
            "muted": False, "loop": False, "playbackRate": 1, "volume": 80,
        }  # fmt: skip
        session: dict[str, Any] = {"mediaSessionId": self.session_id, "startedAt": self.started_at}
        session.update({k: round(v, 3) if isinstance(v, float) else v for k, v in self.stats.items() if v})
        out = [{"schema": PLAYER, "data": player}, {"schema": SESSION, "data": session}]
        if self.ad is not None and self.ad_break is not None:
            out += [{"schema": AD, "data": self.ad}, {"schema": AD_BREAK, "data": self.ad_break}]
        return out

    def add(self, stat: str, amount: float) -> None:
        self.stats[stat] = self.stats.get(stat, 0) + amount

    # -- the script --------------------------------------------------------------------------
    def script(self, ping_interval: float, length: float) -> Iterator[Step]:
        """Yields (seconds of simulated time to wait first, event name, event data). The caller
        builds the event with :meth:`event` *after* waiting, while the script is suspended, so
        its timestamps and entities are those of the moment it happens."""
        rng = self.rng
        yield 0.0, "page_view", None
        yield rng.uniform(0.2, 1.5), "ready", None
        self.status = "idle"
        if rng.random() < 0.7:
            yield from self.ad_break_steps("preroll", pod=2)
        self.paused, self.status = False, "watching"
        yield rng.uniform(0.1, 0.6), "play", None
        end_at = min(self.duration, length * rng.uniform(0.6, 1.0))
        midroll_at = end_at / 2 if rng.random() < 0.5 else None
        boundaries = [10, 25, 50, 75, 90]
        while self.position < end_at:
            step = min(ping_interval, end_at - self.position)
            self.position += step
            self.add("timePlayed", step)
            self.add("contentWatched", step)
            progress = 100 * self.position / self.duration
            while boundaries and progress >= boundaries[0]:
                yield 0.0, "percent_progress", {"percentProgress": boundaries.pop(0)}
            yield step, "ping", None
            roll = rng.random()
            if midroll_at is not None and self.position >= midroll_at:
                midroll_at = None
                yield from self.ad_break_steps("midroll", pod=1)
                self.status = "watching"
            elif roll < 0.08:
                self.paused, self.status = True, "paused"
                yield 0.0, "pause", None
                pause = rng.uniform(1, 3 * ping_interval)
                self.add("timePaused", pause)
                if rng.random() < 0.15:  # walks away while paused
                    self.abandoned = True
                    return
                self.paused, self.status = False, "watching"
                yield pause, "play", None
            elif roll < 0.14:
                yield 0.0, "seek_start", None
                self.position = min(end_at, max(0.0, self.position + rng.uniform(-30, 60)))
                yield rng.uniform(0.1, 0.5), "seek_end", None
            elif roll < 0.20:
                self.status = "buffering"
                yield 0.0, "buffer_start", None
                stall = rng.uniform(0.3, 3)
                self.add("timeBuffering", stall)
                self.status = "watching"
                yield stall, "buffer_end", None
            elif roll < 0.23:
                self.abandoned = True  # closes the tab: no more events
                return
        if self.position >= self.duration - 1e-6 or rng.random() < 0.8:
            self.ended, self.paused, self.status = True, True, "ended"
            yield 0.5, "end", None
        else:
            self.abandoned = True

    def ad_break_steps(self, kind: str, pod: int) -> Iterator[Step]:
        rng = self.rng
        self.ad_break = {"breakId": f"{kind}-{uuid.uuid4().hex[:6]}", "name": kind, "breakType": "linear",
                         "startTime": round(self.position, 3), "podSize": pod}  # fmt: skip
        self.add("adBreaks", 1)
        self.status = "watching_ad"
        yield 0.2, "ad_break_start", None
        for pos in range(1, pod + 1):
            ad_len = rng.choice((6.0, 8.0, 15.0))
            self.ad = {"adId": f"ad-{pos}-{rng.randint(100, 999)}", "name": f"Ad {pos}",
                       "creativeId": f"creative-{pos}", "podPosition": pos, "duration": ad_len,
                       "skippable": True}  # fmt: skip
            self.add("ads", 1)
            yield 0.1, "ad_start", None
            fate = rng.random()
            watched = 0.0
            for q in (0.25, 0.5, 0.75):
                if fate < 0.3 and q * ad_len >= 5:  # skippable after 5 s
                    break
                wait = q * ad_len - watched
                watched = q * ad_len
                self.add("timeSpentAds", wait)
                yield wait, "ad_quartile", {"percentProgress": int(q * 100)}
            if fate < 0.3:
                self.add("adsSkipped", 1)
                yield max(0.0, 5 - watched), "ad_skip", None
            else:
                if fate > 0.85:
                    self.add("adsClicked", 1)
                    yield 0.1, "ad_click", None
                self.add("timeSpentAds", ad_len - watched)
                yield ad_len - watched, "ad_complete", None
            self.ad = None
        yield 0.1, "ad_break_end", None
        self.ad_break = None


# --------------------------------------------------------------------------------------------
# the load driver
# --------------------------------------------------------------------------------------------
@dataclass
class Counters:
    sent: int = 0
    accepted: int = 0
    retried: int = 0
    failed_requests: int = 0
    requests: int = 0
    unreachable_since: float | None = None  # monotonic time of the first failed connection in a row
    last_error: str = ""
    gave_up: str | None = None  # why delivery stopped (the collector unreachable too long)


class Sender:
    """Packs queued events into tp2 POSTs and delivers each batch until it is accepted.

    Each viewer's events always go through the same connection's queue, in order, as a
    tracker's single event queue does: a batch held back by retries is never overtaken by the
    same viewer's newer events."""

    def __init__(
        self,
        collector: str,
        batch_size: int,
        connections: int,
        counters: Counters,
        give_up_after_s: float = 30.0,
    ) -> None:
        import httpx

        self.url = collector.rstrip("/") + TP2_PATH
        self.give_up_after_s = give_up_after_s
        self.batch_size = batch_size
        self.queues: list[asyncio.Queue[dict[str, str]]] = [asyncio.Queue() for _ in range(connections)]
        self.counters = counters
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.client = httpx.AsyncClient(limits=limits, timeout=30.0, http2=False)
        self.workers = [asyncio.create_task(self._worker(q)) for q in self.queues]

    def put(self, viewer_index: int, item: dict[str, str]) -> None:
        self.queues[viewer_index % len(self.queues)].put_nowait(item)

    async def _worker(self, queue: asyncio.Queue[dict[str, str]]) -> None:
        while True:
            first = await queue.get()
            batch = [first]
            while len(batch) < self.batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            await self._deliver(batch)
            for _ in batch:
                queue.task_done()

    async def _deliver(self, batch: list[dict[str, str]]) -> None:
        delay = 0.2
        counters = self.counters
        while counters.gave_up is None:
            # stm is stamped on every attempt, as the JS tracker does: a stale stm on a retry would
            # move the event's derived_tstamp to the retry's arrival time
            now = str(int(time.time() * 1000))
            for item in batch:
                item["stm"] = now
            body = orjson.dumps({"schema": PAYLOAD_DATA, "data": batch})
            counters.requests += 1
            try:
                resp = await self.client.post(
                    self.url, content=body, headers={"Content-Type": "application/json; charset=UTF-8"}
                )
            except Exception as exc:  # connection refused / reset: the collector may be restarting
                counters.failed_requests += 1
                counters.last_error = f"{type(exc).__name__}: {exc}"[:200]
                failed_at = time.monotonic()
                if counters.unreachable_since is None:
                    counters.unreachable_since = failed_at
                elif failed_at - counters.unreachable_since >= self.give_up_after_s:
                    counters.gave_up = (
                        f"the collector at {self.url} was unreachable for {self.give_up_after_s:g} s "
                        f"({counters.last_error})"
                    )
                    return
                counters.retried += len(batch)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            counters.unreachable_since = None
            if resp.status_code == 200:
                counters.accepted += len(batch)
                return
            if resp.status_code in (429, 503) or resp.status_code >= 500:
                counters.retried += len(batch)
                retry_after = resp.headers.get("Retry-After", "")
                wait = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else delay
                await asyncio.sleep(min(wait, 30.0))
                delay = min(delay * 2, 5.0)
                continue
            # 4xx other than 429: the collector refused it for good (bad rows were written).
            counters.failed_requests += 1
            return

    async def close(self) -> None:
        for q in self.queues:
            await q.join()
        for w in self.workers:
            w.cancel()
        await self.client.aclose()


async def _run_viewer(
    viewer: Viewer, sender: Sender, counters: Counters, ping_interval: float, length: float, time_scale: float
) -> None:
    await asyncio.sleep(viewer.rng.uniform(0, min(5.0, length / 4)) / time_scale)
    for wait, name, data in viewer.script(ping_interval, length):
        if wait > 0:
            await asyncio.sleep(wait / time_scale)
        counters.sent += 1
        sender.put(viewer.index, viewer.event(name, data))


def _progress_line(counters: Counters, started: float, viewers: int) -> str:
    elapsed = max(time.monotonic() - started, 1e-9)
    line = (
        f"viewers {viewers}  sent {counters.sent}  accepted {counters.accepted}  "
        f"retried {counters.retried}  rate {counters.accepted / elapsed:,.0f} ev/s  "
        f"pending {counters.sent - counters.accepted}"
    )
    if counters.unreachable_since is not None:
        line += f"  collector unreachable for {time.monotonic() - counters.unreachable_since:.0f} s"
    return line


async def simulate(
    collector: str,
    viewers: int,
    duration: float,
    *,
    ping_interval: float = 10.0,
    time_scale: float = 1.0,
    batch_size: int = 50,
    connections: int = 8,
    app_id: str = "lvp-sim",
    seed: int | None = None,
    progress: TextIO | None = sys.stderr,
    give_up_after_s: float = 30.0,
) -> tuple[list[Viewer], Counters]:
    """Run ``viewers`` sessions of about ``duration`` simulated seconds each; returns when every
    event was accepted by the collector, or once it was unreachable for ``give_up_after_s``
    (``counters.gave_up`` says so)."""
    rng = random.Random(seed)
    counters = Counters()
    sender = Sender(collector, batch_size, connections, counters, give_up_after_s)
    population = [Viewer(i, random.Random(rng.random()), app_id) for i in range(viewers)]
    started = time.monotonic()
    tasks = [
        asyncio.create_task(_run_viewer(v, sender, counters, ping_interval, duration, time_scale))
        for v in population
    ]

    tty = progress is not None and progress.isatty()

    async def report() -> None:  # a line kept up to date on a terminal, else one every 10 s
        while True:
            await asyncio.sleep(1.0 if tty else 10.0)
            if progress is not None:
                line = _progress_line(counters, started, viewers)
                progress.write(f"\r{line}   " if tty else line + "\n")
                progress.flush()

    async def watch() -> None:  # the collector stayed unreachable: the viewers stop too
        while counters.gave_up is None:
            await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()

    reporter = asyncio.create_task(report())
    watcher = asyncio.create_task(watch())
    try:
        try:
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            if counters.gave_up is None:
                raise
        await sender.close()
    finally:
        for helper in (reporter, watcher):
            helper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await helper
    if progress is not None:
        line = _progress_line(counters, started, viewers)
        progress.write(f"\r{line}   \n" if tty else line + "\n")
    return population, counters


def expectations(population: list[Viewer], key: bytes | None) -> list[dict[str, Any]]:
    from lvp.pseudonym import pseudonymize

    rows = []
    for v in population:
        raw_viewer = v.uid or v.duid
        rows.append(
            {
                "raw": {"uid": v.uid or None, "duid": v.duid},
                "viewer_id": pseudonymize(raw_viewer, key) if key else None,
                "expected_status": v.status,
                "abandoned": v.abandoned,
                "media_label": v.title,
                "events_sent": v.events_sent,
                "counts": v.counts,
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("simulate", help="Drive N synthetic viewers through the collector (tp2 POSTs).")
    p.add_argument("--viewers", type=int, default=10, help="Concurrent viewers (default 10).")
    p.add_argument("--duration", type=float, default=120.0, help="Session length in simulated s.")
    p.add_argument("--collector", default=None, help="Collector URL (default from LVP_COLLECTOR_*).")
    p.add_argument("--ping-interval", type=float, default=10.0, help="Media ping interval, simulated s.")
    p.add_argument("--time-scale", type=float, default=1.0, help="Simulated seconds per real second.")
    p.add_argument("--batch-size", type=int, default=50, help="Events per tp2 POST (several viewers).")
    p.add_argument("--connections", type=int, default=8, help="Keep-alive connections.")
    p.add_argument("--app-id", default="lvp-sim")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--expect", type=Path, default=None, help="Write per-viewer expectations (JSON Lines).")
    p.add_argument("--quiet", action="store_true", help="No live progress line.")
    p.add_argument(
        "--give-up-after",
        type=float,
        default=30.0,
        metavar="S",
        help="Stop (exit 1) once the collector has been unreachable this long (default 30 s).",
    )
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    settings: Settings = settings_from_args(args)
    collector = args.collector or f"http://{settings.collector_host}:{settings.collector_port}"
    started = time.monotonic()
    population, counters = asyncio.run(
        simulate(
            collector,
            args.viewers,
            args.duration,
            ping_interval=args.ping_interval,
            time_scale=args.time_scale,
            batch_size=args.batch_size,
            connections=args.connections,
            app_id=args.app_id,
            seed=args.seed,
            progress=None if args.quiet else sys.stderr,
            give_up_after_s=args.give_up_after,
        )
    )
    elapsed = time.monotonic() - started
    if args.expect:
        try:
            key: bytes | None = settings.require_pseudonym_key()
        except ConfigError:
            key = None
        with args.expect.open("wb") as fh:
            for row in expectations(population, key):
                fh.write(orjson.dumps(row) + b"\n")
    by_status: dict[str, int] = {}
    for v in population:
        by_status[v.status] = by_status.get(v.status, 0) + 1
    print(
        f"simulated {len(population)} viewers in {elapsed:.1f}s: {counters.sent} events sent, "
        f"{counters.accepted} accepted, {counters.retried} retried, {counters.requests} requests, "
        f"{counters.failed_requests} refused/failed; final statuses {by_status}"
    )
    if counters.gave_up is not None:
        print(
            f"lvp: gave up: {counters.gave_up}; {counters.sent - counters.accepted} events not delivered",
            file=sys.stderr,
        )
        return 1
    return 0 if counters.accepted == counters.sent else 1
