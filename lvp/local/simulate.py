"""`lvp simulate`: synthetic viewers over the real tracker protocol.

Each viewer is a scripted but random media session (startup, pre-roll ad pod with skips and
clicks, play, pauses — some for minutes —, seeks, buffering, a mid-roll, pings, percent progress,
end — some abandon), emitted as Snowplow media plugin v4 events with the media_player / session /
ad entities the JavaScript tracker sends. Events of many viewers are packed into tp2 POST batches
on a few keep-alive connections. 503/429 answers are honoured (Retry-After) and retried — an
event is never dropped — and so are failed connections (a collector restarting), until the
collector has been unreachable for ``--give-up-after`` seconds: then the run stops with exit 1
and says so. ``--expect FILE`` writes each viewer's raw ids, pseudonym and expected final status
as JSON Lines.

Cheap enough for 100,000 concurrent viewers in one process: viewers are not tasks; each one's
next event sits in one heap of due times that a single loop pops, and each viewer's constant
payload fields and entity JSON are encoded once. ``--run-for S`` keeps ``--viewers`` sessions
going for S real seconds (a viewer who leaves is replaced by a new one), then stops, delivers
everything already generated and exits; SIGTERM / SIGINT do the same earlier.

Traffic shapes (:class:`Traffic`; the CLI's defaults are a realistic mix): events that arrive
late (held back a few seconds, as a tracker's queue does on a flaky network), events sent twice
(same event id: a retry whose first answer was lost), raw identifiers inside page URLs (the
collector must scrub them), and pauses lasting minutes (one ping while paused, as the media
plugin's ``maxPausedPings`` = 1, then silence).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import itertools
import random
import signal
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
from lvp.local.http1 import Connection

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
#: The scheduler's granularity (real s): events due within a tick are sent together.
_TICK_S = 0.005
#: The media plugin's default ping interval (s).
MEDIA_PING_INTERVAL_S = 30.0

Step = tuple[float, str, dict[str, Any] | None]

_CONTEXTS_OPEN = '{"schema":%s,"data":[' % orjson.dumps(CONTEXTS).decode()  # noqa: UP031
_UNSTRUCT_OPEN = '{"schema":%s,"data":{"schema":' % orjson.dumps(UNSTRUCT).decode()  # noqa: UP031
_UE_PREFIX: dict[str, str] = {}
# event ids: random UUID v4 strings without uuid.uuid4()'s os.urandom call and UUID object (~7 %
# of the simulator's CPU); seeded from the OS, never from --seed, so runs never share ids
_ids = random.Random(uuid.uuid4().int)


def _event_id() -> str:
    """A random RFC 4122 version-4 UUID string."""
    x = _ids.getrandbits(128) & ~(0xF000 << 64) & ~(0xC << 60) | (0x4000 << 64) | (0x8 << 60)
    h = f"{x:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _ue_pr(name: str, data: dict[str, Any] | None) -> str:
    """The ``ue_pr`` JSON of media event ``name``: the constant prefix per name is encoded once."""
    prefix = _UE_PREFIX.get(name)
    if prefix is None:
        prefix = _UE_PREFIX[name] = _UNSTRUCT_OPEN + orjson.dumps(MEDIA.format(name)).decode() + ',"data":'
    return prefix + (orjson.dumps(data).decode() if data else "{}") + "}}"


@dataclass(frozen=True)
class Traffic:
    """Shapes of the traffic beyond the scripted sessions (fractions are per event / viewer)."""

    late: float = 0.0  #: share of events held back ``late_s`` before they are sent
    late_s: tuple[float, float] = (1.0, 6.0)  #: how late (real s), within the reorder window
    duplicates: float = 0.0  #: share of events sent a second time (same event id) a little later
    url_ids: float = 0.0  #: share of viewers whose page URL carries their raw ids
    long_pauses: float = 0.0  #: share of pauses that last minutes (one paused ping, then silence)

    @classmethod
    def realistic(cls) -> Traffic:
        return cls(late=0.01, duplicates=0.005, url_ids=0.2, long_pauses=0.25)


# --------------------------------------------------------------------------------------------
# one viewer's media session
# --------------------------------------------------------------------------------------------
@dataclass(slots=True)
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
    ids_in_url: bool = False
    # player model
    position: float = 0.0
    paused: bool = True
    ended: bool = False
    status: str = "idle"  # the expected profile status after the last event sent
    ad: dict[str, Any] | None = None
    ad_break: dict[str, Any] | None = None
    started_at: str = ""
    stats: dict[str, float] = field(default_factory=dict)
    events_sent: int = 0  # distinct events (a duplicate is not counted again)
    duplicates: int = 0
    late: int = 0
    abandoned: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    _base: dict[str, str] = field(default_factory=dict)  # payload fields that never change
    _context_head: str = ""  # contexts JSON up to the media entities (web_page encoded once)

    def __post_init__(self) -> None:
        self.title = self.rng.choice(TITLES)
        self.duration = float(self.rng.choice((120, 300, 600, 1800)))
        self.useragent = self.rng.choice(USER_AGENTS)
        if self.rng.random() < 0.6:
            self.uid = f"user-{self.index}-{uuid.uuid4().hex[:8]}@example.com"
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        url = f"https://demo.example/watch/{self.index}"
        if self.ids_in_url:  # a site that leaks its ids into the URL: the collector must scrub them
            url += f"?viewer={self.duid}" + (f"&email={self.uid}" if self.uid else "")
        self._base = {
            "tv": "lvp-sim-0.2.0", "tna": "sim", "aid": self.app_id, "p": "web", "duid": self.duid,
            "sid": self.session_id, "vid": "1", "url": url, "ua": self.useragent, "lang": "en-US",
            "res": "1920x1080", "cookie": "1", "tz": "Europe/London",
        }  # fmt: skip
        if self.uid:
            self._base["uid"] = self.uid
        self._context_head = (
            _CONTEXTS_OPEN + orjson.dumps({"schema": WEB_PAGE, "data": {"id": self.page_id}}).decode()
        )

    # -- protocol --------------------------------------------------------------------------
    def event(self, name: str, data: dict[str, Any] | None = None) -> dict[str, str]:
        """One payload_data item for media event ``name`` (or ``page_view``)."""
        now_ms = str(int(time.time() * 1000))
        item = self._base.copy()
        item["eid"] = _event_id()
        item["dtm"] = item["stm"] = now_ms
        if name == "page_view":
            item["e"] = "pv"
            item["page"] = self.title
            item["co"] = self._context_head + "]}"
        else:
            item["e"] = "ue"
            item["ue_pr"] = _ue_pr(name, data)
            item["co"] = self._context_head + "," + orjson.dumps(self.media_entities()).decode()[1:] + "}"
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
    def script(self, ping_interval: float, length: float, long_pauses: float = 0.0) -> Iterator[Step]:
        """Yields (seconds of simulated time to wait first, event name, event data). The caller
        builds the event with :meth:`event` *after* waiting, while the script is suspended, so
        its timestamps and entities are those of the moment it happens. ``long_pauses`` is the
        share of pauses that last minutes instead of seconds."""
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
                long = rng.random() < long_pauses
                pause = rng.uniform(60, 600) if long else rng.uniform(1, 3 * ping_interval)
                if rng.random() < 0.15:  # walks away while paused
                    self.add("timePaused", pause)
                    self.abandoned = True
                    return
                if long:  # the media plugin pings once while paused (maxPausedPings = 1), then is silent
                    self.add("timePaused", ping_interval)
                    yield ping_interval, "ping", None
                    pause -= ping_interval
                self.add("timePaused", pause)
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
    sent: int = 0  # event sends queued (duplicates included)
    accepted: int = 0
    retried: int = 0
    failed_requests: int = 0
    requests: int = 0
    duplicates: int = 0  # of ``sent``: second sends of an event
    late: int = 0  # events held back before sending
    sessions: int = 0  # viewers started (replacements included)
    unreachable_since: float | None = None  # monotonic time of the first failed connection in a row
    last_error: str = ""
    gave_up: str | None = None  # why delivery stopped (the collector unreachable too long)


class Sender:
    """Packs queued events into tp2 POSTs and delivers each batch until it is accepted.

    Each viewer's events always go through the same connection's queue, in order, as a
    tracker's single event queue does: a batch held back by retries is never overtaken by the
    same viewer's newer events. With ``linger_s`` a connection waits that long for a batch to
    fill before it posts (fewer, fuller requests under load)."""

    def __init__(
        self,
        collector: str,
        batch_size: int,
        connections: int,
        counters: Counters,
        give_up_after_s: float = 30.0,
        linger_s: float = 0.0,
    ) -> None:
        self.url = collector.rstrip("/") + TP2_PATH
        self.give_up_after_s = give_up_after_s
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.queues: list[asyncio.Queue[dict[str, str]]] = [asyncio.Queue() for _ in range(connections)]
        self.counters = counters
        self.connections = [Connection(self.url, timeout=30.0) for _ in range(connections)]
        pairs = zip(self.queues, self.connections, strict=True)
        self.workers = [asyncio.create_task(self._worker(q, c)) for q, c in pairs]

    def put(self, viewer_index: int, item: dict[str, str]) -> None:
        self.queues[viewer_index % len(self.queues)].put_nowait(item)

    async def _worker(self, queue: asyncio.Queue[dict[str, str]], conn: Connection) -> None:
        while True:
            first = await queue.get()
            if self.linger_s > 0 and queue.qsize() + 1 < self.batch_size:
                await asyncio.sleep(self.linger_s)
            batch = [first]
            while len(batch) < self.batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            await self._deliver(batch, conn)
            for _ in batch:
                queue.task_done()

    async def _deliver(self, batch: list[dict[str, str]], conn: Connection) -> None:
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
                resp = await conn.post(body)
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
            if resp.status == 200:
                counters.accepted += len(batch)
                return
            if resp.status in (429, 503) or resp.status >= 500:
                counters.retried += len(batch)
                retry_after = resp.headers.get("retry-after", "")
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
        for c in self.connections:
            c.close()


class _Session:
    """A viewer being driven: its script and the step due next."""

    __slots__ = ("data", "name", "sent_status", "steps", "viewer")

    def __init__(self, viewer: Viewer, steps: Iterator[Step]) -> None:
        self.viewer = viewer
        self.steps: Iterator[Step] | None = steps
        self.name = ""
        self.data: dict[str, Any] | None = None
        self.sent_status = viewer.status


class Scheduler:
    """Every viewer's next event in one heap of due times (loop clock), popped by one loop: no
    task or timer per viewer. Late and duplicate sends wait in a second heap."""

    def __init__(
        self,
        sender: Sender,
        counters: Counters,
        *,
        ping_interval: float,
        length: float,
        time_scale: float,
        traffic: Traffic,
        rng: random.Random,
    ) -> None:
        self.sender = sender
        self.counters = counters
        self.ping_interval = ping_interval
        self.length = length
        self.time_scale = time_scale
        self.traffic = traffic
        self.rng = rng
        self.heap: list[tuple[float, int, _Session]] = []
        self.held: list[tuple[float, int, int, dict[str, str]]] = []  # (due, seq, viewer index, item)
        self.seq = itertools.count()
        self.live: dict[int, _Session] = {}
        self.stopping = False

    def add(self, viewer: Viewer, due: float) -> None:
        session = _Session(viewer, viewer.script(self.ping_interval, self.length, self.traffic.long_pauses))
        self.counters.sessions += 1
        self.live[viewer.index] = session
        self._advance(session, due)

    def _advance(self, session: _Session, due: float) -> bool:
        """Fetch the session's next step and schedule it; False when the script is over."""
        assert session.steps is not None
        try:
            wait, session.name, session.data = next(session.steps)
        except StopIteration:
            session.steps = None
            del self.live[session.viewer.index]
            return False
        heapq.heappush(self.heap, (due + wait / self.time_scale, next(self.seq), session))
        return True

    def _emit(self, session: _Session, now: float) -> None:
        viewer, counters, traffic, rng = session.viewer, self.counters, self.traffic, self.rng
        item = viewer.event(session.name, session.data)
        session.sent_status = viewer.status
        counters.sent += 1
        if traffic.late and rng.random() < traffic.late:
            counters.late += 1
            viewer.late += 1
            heapq.heappush(
                self.held, (now + rng.uniform(*traffic.late_s), next(self.seq), viewer.index, item)
            )
        else:
            self.sender.put(viewer.index, item)
        if traffic.duplicates and rng.random() < traffic.duplicates:
            counters.sent += 1
            counters.duplicates += 1
            viewer.duplicates += 1
            heapq.heappush(self.held, (now + rng.uniform(0.5, 5.0), next(self.seq), viewer.index, dict(item)))

    def release_held(self, now: float) -> None:
        held = self.held
        while held and (held[0][0] <= now or self.stopping):
            _, _, index, item = heapq.heappop(held)
            self.sender.put(index, item)

    def run_due(self, now: float, limit: int = 2000) -> tuple[int, list[Viewer]]:
        """Emit up to ``limit`` due events; returns how many and the viewers whose session ended."""
        heap, done = self.heap, []
        n = 0
        while heap and heap[0][0] <= now and n < limit:
            due, _, session = heapq.heappop(heap)
            self._emit(session, now)
            n += 1
            if not self._advance(session, due):
                done.append(session.viewer)
        self.release_held(now)
        return n, done

    def cut(self) -> None:
        """Stop every session where it is: its expected status is that of its last event sent."""
        for session in self.live.values():
            session.viewer.status = session.sent_status
            session.steps = None
        self.live.clear()
        self.heap.clear()


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
    traffic: Traffic | None = None,
    run_for: float | None = None,
    ramp_s: float | None = None,
    linger_s: float = 0.0,
    stop: asyncio.Event | None = None,
    live_summary: Path | None = None,
) -> tuple[list[Viewer], Counters]:
    """Run ``viewers`` sessions of about ``duration`` simulated seconds each; returns when every
    event was accepted by the collector, or once it was unreachable for ``give_up_after_s``
    (``counters.gave_up`` says so).

    With ``run_for`` (real seconds), ``viewers`` sessions are kept going — one that ends is
    replaced by a new viewer — until then; ``stop`` ends the run earlier. Either way the sessions
    are cut where they are and every event generated so far is delivered. Viewers join over
    ``ramp_s`` real seconds (default: the first 5 simulated seconds, at most a quarter of a
    session). With ``live_summary`` the counters are written there as JSON every second while
    the run goes on (:func:`write_summary`)."""
    traffic = traffic or Traffic()
    rng = random.Random(seed)
    counters = Counters()
    sender = Sender(collector, batch_size, connections, counters, give_up_after_s, linger_s)
    loop = asyncio.get_running_loop()
    sched = Scheduler(
        sender, counters, ping_interval=ping_interval, length=duration, time_scale=time_scale,
        traffic=traffic, rng=rng,
    )  # fmt: skip
    ramp = ramp_s if ramp_s is not None else min(5.0, duration / 4) / time_scale
    population: list[Viewer] = []

    def new_viewer(index: int) -> Viewer:
        vrng = random.Random(rng.random())
        return Viewer(index, vrng, app_id, ids_in_url=rng.random() < traffic.url_ids)

    started = time.monotonic()
    t0 = loop.time()
    for i in range(viewers):
        v = new_viewer(i)
        population.append(v)
        sched.add(v, t0 + v.rng.uniform(0, ramp))
    deadline = t0 + run_for if run_for is not None else None

    tty = progress is not None and progress.isatty()

    async def report() -> None:  # a line kept up to date on a terminal, else one every 10 s
        ticks = 0
        while True:
            await asyncio.sleep(1.0)
            ticks += 1
            if live_summary is not None:
                write_summary(live_summary, counters, live=len(sched.live))
            if progress is not None and (tty or ticks % 10 == 0):
                line = _progress_line(counters, started, len(sched.live))
                progress.write(f"\r{line}   " if tty else line + "\n")
                progress.flush()

    reporter = asyncio.create_task(report())
    try:
        while counters.gave_up is None:
            now = loop.time()
            if (deadline is not None and now >= deadline) or (stop is not None and stop.is_set()):
                break
            if not sched.heap and not sched.held:
                break
            emitted, done = sched.run_due(now)
            if deadline is not None:  # keep the audience: a viewer who left is replaced
                for _ in done:
                    v = new_viewer(len(population))
                    population.append(v)
                    sched.add(v, now + v.rng.uniform(0, 2.0) / time_scale)
            if emitted >= 2000:
                await asyncio.sleep(0)  # let the connections run, then catch up
                continue
            nxt = min(
                sched.heap[0][0] if sched.heap else now + 0.1, sched.held[0][0] if sched.held else now + 0.1
            )
            # wake up for the next due event, but at most every _TICK_S (events due meanwhile go
            # out together: a large audience has one due every few µs, and a wake-up per event
            # cost the simulator a fifth of its CPU) and at least every 0.1 s (stop / deadline)
            await asyncio.sleep(min(max(nxt - now, _TICK_S), 0.1))
        sched.stopping = True
        sched.cut()
        sched.release_held(loop.time())
        if counters.gave_up is None:
            closing = asyncio.create_task(sender.close())
            while not closing.done():
                await asyncio.wait({closing}, timeout=0.2)
                if counters.gave_up is not None:
                    closing.cancel()
                    for w in sender.workers:
                        w.cancel()
                    break
            if closing.done() and not closing.cancelled():
                closing.result()
        else:
            for w in sender.workers:
                w.cancel()
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
    if progress is not None:
        line = _progress_line(counters, started, len(sched.live))
        progress.write(f"\r{line}   \n" if tty else line + "\n")
    return population, counters


def write_summary(path: Path, counters: Counters, **extra: Any) -> None:
    """The run's counters as JSON, with ``pending``: sent but not accepted yet (queued, held
    back as late, in flight, or refused). Written whole, then renamed: a reader never sees half."""
    fields = ("sent", "accepted", "retried", "failed_requests", "requests", "duplicates", "late", "sessions")
    data = {k: getattr(counters, k) for k in fields} | {"pending": counters.sent - counters.accepted} | extra
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(data))
    tmp.replace(path)


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
                "duplicates": v.duplicates,
                "late": v.late,
                "counts": v.counts,
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mix = Traffic.realistic()
    p = sub.add_parser(
        "simulate",
        help="Drive N synthetic viewers through the collector (tp2 POSTs).",
        description=(
            "Synthetic media-plugin viewers over the tracker protocol (tp2 POST batches on keep-alive "
            "connections). The default traffic is a realistic mix: ads, pauses (some for minutes), "
            "seeks, buffering, abandons, 30 s pings, a few late and duplicated events, raw ids in some "
            "page URLs. 503/429 and failed connections are retried; no event is dropped."
        ),
    )
    p.add_argument("--viewers", type=int, default=10, help="Concurrent viewers (default 10).")
    p.add_argument("--duration", type=float, default=120.0, help="Session length in simulated s.")
    p.add_argument("--collector", default=None, help="Collector URL (default from LVP_COLLECTOR_*).")
    p.add_argument(
        "--ping-interval",
        type=float,
        default=MEDIA_PING_INTERVAL_S,
        help="Media ping interval, simulated s (default 30, the media plugin's).",
    )
    p.add_argument("--time-scale", type=float, default=1.0, help="Simulated seconds per real second.")
    p.add_argument(
        "--run-for",
        type=float,
        default=None,
        metavar="S",
        help="Keep --viewers sessions going (replacing viewers who leave) for S real seconds, then stop "
        "and deliver what was generated. Default: each viewer plays one session.",
    )
    p.add_argument("--ramp", type=float, default=None, metavar="S", help="Viewers join over S real seconds.")
    p.add_argument("--batch-size", type=int, default=50, help="Most events per tp2 POST (several viewers).")
    p.add_argument("--connections", type=int, default=8, help="Keep-alive connections.")
    p.add_argument(
        "--linger",
        type=float,
        default=0.0,
        metavar="S",
        help="Wait up to S s for a batch to fill (default 0).",
    )
    p.add_argument(
        "--late", type=float, default=mix.late, help=f"Share of events sent late (default {mix.late})."
    )
    p.add_argument(
        "--duplicates",
        type=float,
        default=mix.duplicates,
        help=f"Share of events sent twice, same event id (default {mix.duplicates}).",
    )
    p.add_argument(
        "--url-ids",
        type=float,
        default=mix.url_ids,
        help=f"Share of viewers with raw ids in their page URL (default {mix.url_ids}).",
    )
    p.add_argument(
        "--long-pauses",
        type=float,
        default=mix.long_pauses,
        help=f"Share of pauses that last minutes (default {mix.long_pauses}).",
    )
    p.add_argument("--app-id", default="lvp-sim")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--expect", type=Path, default=None, help="Write per-viewer expectations (JSON Lines).")
    p.add_argument(
        "--summary", type=Path, default=None,
        help="Write the run's counters as JSON: every second while it runs (with `pending`), and at the end.",
    )  # fmt: skip
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
    traffic = Traffic(
        late=args.late, duplicates=args.duplicates, url_ids=args.url_ids, long_pauses=args.long_pauses
    )
    started = time.monotonic()

    async def run() -> tuple[list[Viewer], Counters]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # stop generating, deliver what was generated
            loop.add_signal_handler(sig, stop.set)
        return await simulate(
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
            traffic=traffic,
            run_for=args.run_for,
            ramp_s=args.ramp,
            linger_s=args.linger,
            stop=stop,
            live_summary=args.summary,
        )

    population, counters = asyncio.run(run())
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
    if args.summary:
        write_summary(
            args.summary, counters, viewers=args.viewers, elapsed_s=round(elapsed, 3),
            gave_up=counters.gave_up, done=True,
        )  # fmt: skip
    print(
        f"simulated {len(population)} viewers in {elapsed:.1f}s: {counters.sent} events sent, "
        f"{counters.accepted} accepted, {counters.retried} retried, {counters.requests} requests, "
        f"{counters.failed_requests} refused/failed ({counters.duplicates} duplicates, "
        f"{counters.late} late); "
        f"final statuses {by_status}"
    )
    if counters.gave_up is not None:
        print(
            f"lvp: gave up: {counters.gave_up}; {counters.sent - counters.accepted} events not delivered",
            file=sys.stderr,
        )
        return 1
    return 0 if counters.accepted == counters.sent else 1
