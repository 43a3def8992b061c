"""Collector CPU cost against a bare forwarding collector, on tracker-shaped traffic.

Two servers take the same requests, one after the other, in the same run and setup:

- the **forwarder** (baseline): a Starlette app that reads the body, parses the JSON (orjson) and
  produces every event raw to Kafka with the collector's producer settings
  (``lvp.kafka.producer_config``: acks=all, idempotence, lz4, linger 60 ms), answering 200 once
  every event is acknowledged (a poll thread, one wake-up of the event loop per request);
- the **collector** (``collector.app.create_app`` under its production uvicorn options): protocol
  and Iglu validation, pseudonyms, privacy scrubbing, the enriched TSV line, acked by Kafka.

Both run in a child process pinned to one CPU (``--server-cpu``) with uvicorn + uvloop +
httptools; the load generator (raw asyncio HTTP/1.1 keep-alive connections) and, when the
benchmark starts it, the Tansu broker run on the other CPU (``--load-cpu``). The figure compared is
**events per CPU-second of the server process** (user + system time of all its threads, from
/proc: Python and librdkafka alike), which a shared machine disturbs less than wall-clock rates
(contention still raises the CPU cost per event: compare the two servers within a run).
``--runs N`` repeats the pair N times (fresh topics each time) and reports the medians, the ratio
of each run and their median.

Each connection has one request in flight, and a request waits for the producer's linger
(``lvp.kafka.LINGER_MS``, 60 ms) and the acks: the connections cap the offered load near
connections / (linger + ~5 ms) requests per second. A server under that cap idles part of its
core and pays its fixed costs over fewer events (128 connections left the forwarder at 61-77 %
of its core with a 60 ms linger). The default of 512 connections keeps both servers busy, so
each is measured at its best CPU cost per event; the header prints the packages both are made of,
since a release of any of them moves the figures.

Traffic (``traffic()``): tp2 POSTs from the media plugin (1-10 events, mostly pings; media_player,
session and web_page entities, ad and ad_break entities during ads), GET /i page views and page
pings, page URLs holding an e-mail address or a client IP, and duplicated requests (a tracker
retrying a POST byte for byte). No-loss check: every event of every request answered 200, warm-up
and drain included, must be on the good topic, counted exactly; bad rows are counted apart
(0 expected: the traffic is valid). The requests come from 200 viewers unless ``--viewers``
says otherwise: a large audience (each viewer's cookie, ids and page URL new to the collector's
caches until it comes back) is ``--viewers 20000 --requests 20000 --warmup 15``.

With ``--split`` a third server runs in each run: the collector's own server (routes, cookie,
CORS, identity, metrics, envelope, Kafka sink) with a pipeline that only serializes each event, as
the forwarder does. Its ratio to the forwarder says what serving costs; the collector's cost
beyond it is its pipeline (``bench/pipeline_bench.py`` counts that part's instructions).

    python -m bench.collector_bench [--runs 5] [--duration 20] [--connections 512] [--split] [--quick]
    python -m bench.collector_bench --bootstrap-servers HOST:PORT   # an existing broker

Target (issue 11): collector events per CPU-second >= 0.5 x the forwarder's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TP2 = "/com.snowplowanalytics.snowplow/tp2"
PIXEL = "/i"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
MEDIA = "com.snowplowanalytics.snowplow.media"
SP = "com.snowplowanalytics.snowplow"
TARGET_RATIO = 0.50
BENCH_KEY = "collector-bench-pseudonym-key-0123"
PHASES = ("forwarder", "collector")
#: --split: the collector's server with a pipeline that only serializes each event (what the
#: forwarder does in process): how much of the collector's cost is serving, how much the pipeline
SERVING = "collector-serving"


# --- traffic shaped like the JavaScript tracker's -----------------------------------------------

#: media plugin events: (name, data, during an ad, weight). Pings dominate a real audience.
_MEDIA_EVENTS = [
    ("ping_event", {}, False, 60),
    ("ping_event", {}, True, 6),
    ("play_event", {}, False, 5),
    ("pause_event", {}, False, 4),
    ("percent_progress_event", {"percentProgress": 25}, False, 4),
    ("seek_end_event", {}, False, 3),
    ("volume_change_event", {"previousVolume": 100, "newVolume": 60}, False, 2),
    ("ad_break_start_event", {}, True, 3),
    ("ad_start_event", {}, True, 3),
    ("ad_quartile_event", {"percentProgress": 50}, True, 4),
    ("ad_complete_event", {}, True, 2),
    ("ad_break_end_event", {}, False, 2),
    ("end_event", {}, False, 2),
]
_WEIGHTS = [w for *_, w in _MEDIA_EVENTS]


@dataclass(slots=True)
class Viewer:
    duid: str
    nuid: str
    session: str
    page_view: str
    media_session: str
    ip: str
    url: str  # some hold raw identifiers: an e-mail in the query string, a client IP as the host


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def viewer(rng: random.Random, i: int) -> Viewer:
    ip = f"198.51.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    url = "http://localhost:3000/media"
    if i % 10 == 3:
        url += f"?email=viewer{i}%40example.com&utm_source=newsletter"
    elif i % 10 == 7:
        url = f"http://{ip}:3000/media?ref=direct"  # the client's own address in the page URL
    return Viewer(_uuid(rng), _uuid(rng), _uuid(rng), _uuid(rng), _uuid(rng), ip, url)


def _common(rng: random.Random, v: Viewer, e: str, now: int) -> dict[str, str]:
    return {
        "e": e, "eid": _uuid(rng), "tv": "js-4.6.6", "tna": "sp", "aid": "lvp-demo", "p": "web",
        "cookie": "1", "cs": "UTF-8", "lang": "en-US", "res": "1920x1080", "cd": "24",
        "tz": "Europe/Lisbon", "dtm": str(now), "vp": "1600x773", "ds": "1600x2200", "vid": "2",
        "sid": v.session, "duid": v.duid, "refr": "http://localhost:3000/", "url": v.url,
        "page": "Big Buck Bunny",
    }  # fmt: skip


def media_event(rng: random.Random, v: Viewer, now: int) -> dict[str, str]:
    """One media plugin event as the JS tracker v4 POSTs it (every value a string)."""
    name, data, in_ad, _ = rng.choices(_MEDIA_EVENTS, _WEIGHTS)[0]
    position = round(rng.uniform(0, 590), 6)
    entities: list[dict[str, Any]] = [
        {
            "schema": f"iglu:{SP}/media_player/jsonschema/2-0-0",
            "data": {"currentTime": position, "paused": name == "pause_event", "ended": name == "end_event",
                     "label": "Big Buck Bunny", "mediaType": "video", "playerType": "html5",
                     "duration": 596.474195, "muted": False, "loop": False, "playbackRate": 1, "volume": 100},
        },
        {
            "schema": f"iglu:{MEDIA}/session/jsonschema/1-0-0",
            "data": {"mediaSessionId": v.media_session, "startedAt": "2026-12-06T02:33:23.276Z",
                     "pingInterval": 30, "timePaused": 0.003, "timePlayed": round(position, 3),
                     "timeSpentAds": 8.993, "ads": 2, "adBreaks": 1, "avgPlaybackRate": 1,
                     "contentWatched": int(position)},
        },
    ]  # fmt: skip
    if in_ad:
        entities += [
            {"schema": f"iglu:{MEDIA}/ad/jsonschema/1-0-0",
             "data": {"podPosition": 1, "adId": "288", "name": "Ad 1", "creativeId": "ad-1", "duration": 4,
                      "skippable": True}},
            {"schema": f"iglu:{MEDIA}/ad_break/jsonschema/1-0-0",
             "data": {"startTime": 0, "name": "break", "breakId": "287", "breakType": "linear"}},
        ]  # fmt: skip
    entities.append({"schema": f"iglu:{SP}/web_page/jsonschema/1-0-0", "data": {"id": v.page_view}})
    ue = {
        "schema": f"iglu:{SP}/unstruct_event/jsonschema/1-0-0",
        "data": {"schema": f"iglu:{MEDIA}/{name}/jsonschema/1-0-0", "data": data},
    }
    co = {"schema": f"iglu:{SP}/contexts/jsonschema/1-0-0", "data": entities}
    event = _common(rng, v, "ue", now)
    event["ue_pr"] = json.dumps(ue, separators=(",", ":"))
    event["co"] = json.dumps(co, separators=(",", ":"))
    event["stm"] = str(now + 3)
    return event


def pixel_event(rng: random.Random, v: Viewer, now: int) -> dict[str, str]:
    """A page view or page ping sent as a GET /i pixel (entities base64url-encoded in ``cx``)."""
    e = rng.choice(("pv", "pp", "pp"))
    co = {
        "schema": f"iglu:{SP}/contexts/jsonschema/1-0-0",
        "data": [{"schema": f"iglu:{SP}/web_page/jsonschema/1-0-0", "data": {"id": v.page_view}}],
    }
    event = _common(rng, v, e, now)
    event["cx"] = (
        base64.urlsafe_b64encode(json.dumps(co, separators=(",", ":")).encode()).decode().rstrip("=")
    )
    if e == "pp":
        event.update({"pp_mix": "0", "pp_max": "0", "pp_miy": str(rng.randrange(900)), "pp_may": "1400"})
    event["stm"] = str(now + 2)
    return event


@dataclass(slots=True)
class Request:
    kind: str  # tp2 | pixel | duplicate
    head: bytes  # request line and headers, without Host (added per server)
    body: bytes
    events: int


def _request(method: str, target: str, v: Viewer, body: bytes, kind: str, events: int) -> Request:
    lines = [
        f"{method} {target} HTTP/1.1",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        "Origin: http://localhost:3000",
        "Referer: http://localhost:3000/media",
        f"Cookie: sp={v.nuid}",
        f"X-Forwarded-For: {v.ip}",
    ]
    if body:
        lines += ["Content-Type: application/json; charset=UTF-8", f"Content-Length: {len(body)}"]
    return Request(kind, ("\r\n".join(lines) + "\r\n").encode(), body, events)


def traffic(count: int, seed: int = 7, viewers: int = 200) -> list[Request]:
    """``count`` requests: ~83 % tp2 POSTs of 1-10 media events, ~12 % GET /i pixels, ~5 %
    byte-identical repeats of an earlier POST. One viewer in ten has an e-mail address in its page
    URL, one in ten its own IP as the page URL's host."""
    rng = random.Random(seed)
    pool = [viewer(rng, i) for i in range(viewers)]
    now = int(time.time() * 1000)
    out: list[Request] = []
    posts: list[Request] = []
    for _ in range(count):
        v = rng.choice(pool)
        t = now - rng.randrange(5000)
        roll = rng.random()
        if roll < 0.05 and posts:
            r = rng.choice(posts)
            out.append(Request("duplicate", r.head, r.body, r.events))
        elif roll < 0.17:
            query = urlencode(pixel_event(rng, v, t), quote_via=quote)
            out.append(_request("GET", f"{PIXEL}?{query}", v, b"", "pixel", 1))
        else:
            n = rng.randint(1, 10)
            events = [media_event(rng, v, t + k) for k in range(n)]
            body = json.dumps({"schema": PAYLOAD_DATA, "data": events}, separators=(",", ":")).encode()
            posts.append(_request("POST", TP2, v, body, "tp2", n))
            out.append(posts[-1])
    return out


def traffic_summary(requests: list[Request]) -> dict[str, Any]:
    kinds = {k: sum(1 for r in requests if r.kind == k) for k in ("tp2", "pixel", "duplicate")}
    events = sum(r.events for r in requests)
    posts = [r for r in requests if r.kind != "pixel"]
    return {
        "requests": len(requests),
        "by_kind": kinds,
        "events": events,
        "events_per_request": round(events / len(requests), 2),
        "mean_post_event_bytes": round(sum(len(r.body) for r in posts) / sum(r.events for r in posts)),
        "mean_request_bytes": round(statistics.mean(len(r.head) + len(r.body) for r in requests)),
    }


# --- the servers under test (run in a pinned child process) --------------------------------------


class _Acks:
    """The forwarder's bridge from librdkafka's delivery reports (poll thread) to a request's
    future: one ``call_soon_threadsafe`` per request, once every message is acknowledged."""

    __slots__ = ("error", "future", "left", "loop")

    def __init__(self, n: int, loop: asyncio.AbstractEventLoop) -> None:
        self.left = n
        self.error: Any = None
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()

    def on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.error = err
        self.left -= 1
        if self.left == 0:
            self.loop.call_soon_threadsafe(self.future.set_result, self.error)


def forwarder_app(settings: Any) -> Any:
    """The baseline, written without the collector's code: read the body, parse it (orjson),
    produce each event raw (its JSON, keyed by its ``duid``) with the collector's producer
    settings (``lvp.kafka.producer_config``), answer 200 once Kafka acknowledged them all."""
    import threading

    import orjson
    from confluent_kafka import Producer
    from starlette.applications import Starlette
    from starlette.requests import Request as HttpRequest
    from starlette.responses import Response
    from starlette.routing import Route

    from lvp.kafka import producer_config

    producer = Producer(producer_config(settings))
    stop = threading.Event()
    topic = settings.topic_good
    gif = bytes.fromhex(
        "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
    )

    def poll() -> None:
        while not stop.is_set():
            producer.poll(0.05)

    async def forward(events: list[Any]) -> Response | None:
        acks = _Acks(len(events), asyncio.get_running_loop())
        for event in events:
            duid = event.get("duid") if isinstance(event, dict) else None
            key = duid.encode() if isinstance(duid, str) else None
            producer.produce(topic, orjson.dumps(event), key, on_delivery=acks.on_delivery)
        if await acks.future is not None:
            return Response("unavailable", status_code=503)
        return None

    async def tp2(request: HttpRequest) -> Response:
        try:
            events = orjson.loads(await request.body())["data"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return Response("bad request", status_code=400)
        return await forward(events) or Response("ok", media_type="text/plain")

    async def pixel(request: HttpRequest) -> Response:
        return await forward([dict(request.query_params)]) or Response(gif, media_type="image/gif")

    async def health(request: HttpRequest) -> Response:
        return Response("ok", media_type="text/plain")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        await asyncio.to_thread(producer.list_topics, timeout=10)
        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            await asyncio.to_thread(producer.flush, 10)

    routes = [Route(TP2, tp2, methods=["POST"]), Route(PIXEL, pixel), Route("/health", health)]
    return Starlette(routes=routes, lifespan=lifespan)


class _SerializeOnly:
    """The collector's pipeline with ``process`` doing only the forwarder's in-process work: each
    event's JSON, keyed by its ``duid``, every event good. Everything else is the real pipeline's
    (which may be compiled, and then takes no new attributes: it is wrapped, not patched)."""

    def __init__(self, pipeline: Any, topic: str) -> None:
        self._pipeline = pipeline
        self._topic = topic

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipeline, name)

    def process(self, items: list[Any], req: Any, envelope: Any = None) -> Any:
        import orjson

        from collector.pipeline import Outcome

        out = Outcome()
        for item in items:
            duid = item.get("duid") if isinstance(item, dict) else None
            out.messages.append(
                (self._topic, duid.encode() if isinstance(duid, str) else b"", orjson.dumps(item))
            )
            out.good += 1
        return out


def serve(kind: str, port: int) -> None:
    import uvicorn

    from collector.server import uvicorn_options
    from lvp.config import Settings

    settings = Settings.from_env()
    if kind == "forwarder":
        app = forwarder_app(settings)
        options: dict[str, Any] = {"loop": "uvloop", "http": "httptools", "access_log": False}
    else:
        from collector.app import create_app

        app = create_app(settings)
        options = uvicorn_options(settings)  # what `lvp collector` runs (its slow-client guard too)
        if kind == SERVING:
            collector = app.state.collector
            collector.pipeline = _SerializeOnly(collector.pipeline, settings.topic_good)
    uvicorn.run(app, **{**options, "host": "127.0.0.1", "port": port, "log_level": "warning"})


def _pinned(cmd: list[str], cpu: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=ROOT, start_new_session=True)
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(proc.pid, {cpu})  # what `taskset -c CPU` does
    return proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("server not ready")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the load generator --------------------------------------------------------------------------


class _Conn(asyncio.Protocol):
    """One keep-alive connection sending requests back to back, reading minimal HTTP/1.1. Every
    response is counted (warm-up and drain too: the no-loss check needs them all); the measured
    window's responses are counted apart."""

    def __init__(self, requests: list[tuple[bytes, int]], stats: dict[str, Any], start: int) -> None:
        self.requests = requests
        self.i = start
        self.stats = stats
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.t0 = 0
        self.events = 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        if self.stats["stop"] or self.transport is None:
            if self.transport is not None:
                self.transport.close()
            return
        self.t0 = time.perf_counter_ns()
        data, self.events = self.requests[self.i % len(self.requests)]
        self.transport.write(data)
        self.i += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            total = head_end + 4 + length
            if len(self.buf) < total:
                return
            status = int(head[9:12])
            self.buf = self.buf[total:]
            stats = self.stats
            stats["all_codes"][status] = stats["all_codes"].get(status, 0) + 1
            if status == 200:
                stats["acked_events"] += self.events
            if stats["measure"]:
                stats["codes"][status] = stats["codes"].get(status, 0) + 1
                if status == 200:
                    stats["events"] += self.events
                stats["lat"].append(time.perf_counter_ns() - self.t0)
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _load(
    port: int,
    requests: list[Request],
    connections: int,
    warmup: float,
    duration: float,
    server_pid: int | None,
) -> dict[str, Any]:
    wire = [(r.head + f"Host: 127.0.0.1:{port}\r\n\r\n".encode() + r.body, r.events) for r in requests]
    stats: dict[str, Any] = {
        "stop": False,
        "measure": False,
        "codes": {},
        "all_codes": {},
        "lat": [],
        "events": 0,
        "acked_events": 0,
    }
    loop = asyncio.get_running_loop()
    conns = []
    for c in range(connections):
        factory = functools.partial(_Conn, wire, stats, c * len(wire) // connections)
        _, proto = await loop.create_connection(factory, "127.0.0.1", port)
        conns.append(proto)
    await asyncio.sleep(warmup)
    stats["measure"] = True
    t0, cpu0 = time.perf_counter(), _cpu_seconds(server_pid)
    await asyncio.sleep(duration)
    stats["measure"] = False
    elapsed, cpu = time.perf_counter() - t0, _cpu_seconds(server_pid) - cpu0
    stats["stop"] = True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.closed for c in conns)), 30)
    lat = sorted(stats["lat"])
    n = len(lat)
    ok = stats["codes"].get(200, 0)
    events = stats["events"]
    return {
        "requests": n,
        "ok": ok,
        "events": events,
        "codes": {str(k): v for k, v in sorted(stats["codes"].items())},
        "all_codes": {str(k): v for k, v in sorted(stats["all_codes"].items())},
        "acked_events_total": stats["acked_events"],  # warm-up and drain included
        "seconds": elapsed,
        "requests_per_s": ok / elapsed,
        "events_per_s": events / elapsed,
        "server_cpu_s": cpu,
        "server_cpu_share": cpu / elapsed,  # 1.0 = the server had its CPU to itself
        "events_per_cpu_s": events / cpu if cpu else 0.0,
        "cpu_us_per_event": cpu / events * 1e6 if events else 0.0,
        "p50_ms": lat[n // 2] / 1e6 if n else 0.0,
        "p99_ms": lat[min(n - 1, int(n * 0.99))] / 1e6 if n else 0.0,
    }


def run_load(
    port: int,
    requests: list[Request],
    connections: int,
    warmup: float,
    duration: float,
    server_pid: int | None = None,
) -> dict[str, Any]:
    coro = _load(port, requests, connections, warmup, duration, server_pid)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# --- orchestration -------------------------------------------------------------------------------


def count_topic(bootstrap: str, topic: str, expected: int, timeout: float) -> int:
    """Messages on ``topic`` (all partitions, from the start): reads until every partition is at
    its end and at least ``expected`` were seen, or ``timeout``."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.partition.eof": True,
        }
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        count, eof, deadline = 0, set(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            msgs = consumer.consume(10_000, 0.5)
            for m in msgs:
                if m.error() is None:
                    count += 1
                    eof.discard(m.partition())
                elif m.error().code() == KafkaError._PARTITION_EOF:  # type: ignore[union-attr]
                    eof.add(m.partition())
            if count >= expected and len(eof) == len(parts):
                break
        return count
    finally:
        consumer.close()


def _machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    return {
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": _versions(),
    }


#: what the two servers are made of: a release of any of them moves both figures
PACKAGES = ("starlette", "uvicorn", "uvloop", "httptools", "confluent-kafka", "orjson", "msgspec")


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    from lvp import compiled

    out["collector modules"] = "compiled" if all(compiled.report().values()) else "plain Python"
    return out


def _phase(kind: str, args: argparse.Namespace, bootstrap: str, requests: list[Request]) -> dict[str, Any]:
    """One server, fresh topics: the load, then the topics counted exactly."""
    from lvp.config import Settings
    from lvp.kafka import create_topics

    suffix = uuid.uuid4().hex[:8]
    settings = Settings.from_env(
        {},
        kafka_bootstrap_servers=bootstrap,
        topic_good=f"bench-{kind}-good-{suffix}",
        topic_bad=f"bench-{kind}-bad-{suffix}",
        topic_changes=f"bench-{kind}-changes-{suffix}",
        pseudonym_key=BENCH_KEY,
    )
    create_topics(settings)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "LVP_TOPIC_GOOD": settings.topic_good,
        "LVP_TOPIC_BAD": settings.topic_bad,
        "LVP_PSEUDONYM_KEY": BENCH_KEY,
        "LVP_DEV": "0",
    }
    port = _free_port()
    cmd = [sys.executable, "-m", "bench.collector_bench", "--serve", kind, "--port", str(port)]
    proc = _pinned(cmd, args.server_cpu, env)
    try:
        _wait_ready(port, proc)
        result = run_load(port, requests, args.connections, args.warmup, args.duration, proc.pid)
    finally:
        _stop(proc)  # flushes the producer
    acked = result["acked_events_total"]
    result["events_on_topic"] = count_topic(bootstrap, settings.topic_good, acked, 60)
    result["lost"] = max(0, acked - result["events_on_topic"])
    result["bad_rows"] = count_topic(bootstrap, settings.topic_bad, 0, 5) if kind == "collector" else 0
    result["non_200"] = {k: v for k, v in result["all_codes"].items() if k != "200"}
    return result


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from lvp.local.broker import start_broker, stop_process

    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {args.load_cpu})
    requests = traffic(args.requests, viewers=args.viewers)
    broker_proc = None
    bootstrap = args.bootstrap_servers
    if not bootstrap:
        broker_proc, bootstrap = start_broker()
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setaffinity(broker_proc.pid, {args.load_cpu})
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": _machine(),
        "load_average": os.getloadavg()[0],
        "setup": {
            "runs": args.runs,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "viewers": args.viewers,
            "server_cpu": args.server_cpu,
            "load_cpu": args.load_cpu,
            "broker": "tansu (started by the benchmark)" if broker_proc else bootstrap,
        },
        "traffic": traffic_summary(requests),
        "runs": [],
    }
    phases = (*PHASES, SERVING) if args.split else PHASES
    results["phases"] = list(phases)
    try:
        for _ in range(args.runs):
            one: dict[str, Any] = {kind: _phase(kind, args, bootstrap, requests) for kind in phases}
            base = one["forwarder"]["events_per_cpu_s"]
            one["ratio"] = one["collector"]["events_per_cpu_s"] / base if base else 0.0
            if args.split:
                one["serving_ratio"] = one[SERVING]["events_per_cpu_s"] / base if base else 0.0
            results["runs"].append(one)
    finally:
        if broker_proc is not None:
            stop_process(broker_proc)
    runs = results["runs"]
    for kind in phases:
        phase = [r[kind] for r in runs]
        results[kind] = {
            key: _median(phase, key)
            for key in (
                "events_per_cpu_s",
                "events_per_s",
                "cpu_us_per_event",
                "server_cpu_share",
                "p50_ms",
                "p99_ms",
            )
        }
        results[kind]["lost"] = sum(p["lost"] for p in phase)
        results[kind]["non_200"] = sum(sum(p["non_200"].values()) for p in phase)
        results[kind]["acked_events"] = sum(p["acked_events_total"] for p in phase)
        results[kind]["events_on_topic"] = sum(p["events_on_topic"] for p in phase)
    results["collector"]["bad_rows"] = sum(r["collector"]["bad_rows"] for r in runs)
    results["ratio"] = _median(runs, "ratio")
    results["ratios"] = [r["ratio"] for r in runs]
    if args.split:
        results["serving_ratio"] = _median(runs, "serving_ratio")
    results["target_ratio"] = TARGET_RATIO
    return results


def table(r: dict[str, Any]) -> str:
    s, t, m = r["setup"], r["traffic"], r["machine"]
    f, c = r["forwarder"], r["collector"]
    kinds = t["by_kind"]
    lines = [
        f"Collector benchmark, {r['date']}: {m['cpu']} ({m['cpus']} CPUs), Python {m['python']}; "
        f"server pinned to CPU {s['server_cpu']}, load generator and broker on CPU {s['load_cpu']}; "
        f"{s['connections']} keep-alive connections; {s['runs']} runs of {s['duration_s']:g} s per server "
        f"(after {s['warmup_s']:g} s warm-up); load average at start {r['load_average']:.2f}.",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in m.get("packages", {}).items()) + ".",
        f"Traffic: {t['requests']} requests of {s['viewers']:,} viewers, cycled "
        f"({kinds['tp2']} tp2 POSTs of 1-10 media events, "
        f"{kinds['pixel']} GET /i pixels, {kinds['duplicate']} duplicated POSTs), "
        f"{t['events_per_request']} events per request, {t['mean_post_event_bytes']} B per POSTed event.",
        "",
        "| server (medians) | events per CPU-second | CPU us/event | events/s (wall) | server CPU share "
        "| p50 ms | p99 ms | acked events (all runs) | on the good topic | lost | non-200 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = [("forwarder: parse, produce raw, acked (baseline)", f),
            ("collector: validated, pseudonymized, enriched, acked", c)]  # fmt: skip
    if SERVING in r:
        rows.append(("collector without its pipeline: serialized as the forwarder does, acked", r[SERVING]))
    for label, p in rows:
        lines.append(
            f"| {label} | {p['events_per_cpu_s']:,.0f} | {p['cpu_us_per_event']:.1f} | {p['events_per_s']:,.0f} | "
            f"{p['server_cpu_share']:.0%} | {p['p50_ms']:.1f} | {p['p99_ms']:.1f} | {p['acked_events']:,} | "
            f"{p['events_on_topic']:,} | {p['lost']} | {p['non_200']} |"
        )
    ratios = ", ".join(f"{x:.2f}" for x in r["ratios"])
    lines += [
        "",
        f"Collector / forwarder events per CPU-second: median **{r['ratio']:.2f}** over {len(r['ratios'])} "
        f"runs ({ratios}); target >= {r['target_ratio']:.2f}. Bad rows: {c['bad_rows']}.",
    ]
    if SERVING in r:
        lines.append(
            f"Collector without its pipeline / forwarder: median **{r['serving_ratio']:.2f}** (what serving, "
            "the routes and the Kafka sink cost; the rest of the collector's cost is its pipeline)."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="forwarder + collector pairs; medians (default 5)")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per server (default 20)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before the measured window")
    p.add_argument(
        "--connections",
        type=int,
        default=512,
        help="keep-alive connections (default 512: both servers saturated with the 60 ms linger)",
    )
    p.add_argument("--requests", type=int, default=2000, help="distinct requests cycled (default 2000)")
    p.add_argument(
        "--viewers",
        type=int,
        default=200,
        help="viewers the requests come from (default 200; a large audience: as many as --requests, "
        "and a warm-up that covers one cycle, so that the window sees each viewer again)",
    )
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--bootstrap-servers", default="", help="use this broker instead of starting Tansu")
    p.add_argument("--quick", action="store_true", help="CI size: 2 runs of 1.5 s, 4 connections")
    p.add_argument(
        "--json", type=Path, default=None, help="results file (default bench/results/collector-*.json)"
    )
    p.add_argument(
        "--split",
        action="store_true",
        help="also measure the collector with a pipeline that only serializes (serving vs pipeline)",
    )
    p.add_argument("--serve", choices=(*PHASES, SERVING), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return 0
    if (os.cpu_count() or 1) < 2:
        args.load_cpu = args.server_cpu
    if args.quick:
        args.runs, args.duration, args.warmup, args.connections, args.requests = 2, 1.5, 0.5, 4, 300
    results = run(args)
    out = args.json or RESULTS / f"collector-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\n(results: {out})")
    ok = all(results[k]["events_per_cpu_s"] > 0 and results[k]["lost"] == 0 for k in results["phases"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
