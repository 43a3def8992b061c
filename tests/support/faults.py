"""Helpers for the fault tests (tests/test_faults.py): varied viewer sessions, a private Tansu
broker reachable only through a cuttable TCP proxy, a throttling HTTP proxy in front of DynamoDB,
a reader of the group's committed offsets, and the tally of lost / double-counted events."""

from __future__ import annotations

import contextlib
import http.client
import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from confluent_kafka import Consumer, TopicPartition
from enriched_factory import DESKTOP_UA, MOBILE_UA, Ad, MediaSessionBuilder, interleave
from prometheus_client.parser import text_string_to_metric_families
from tcpproxy import TcpProxy

from lvp.config import Settings
from lvp.enriched import from_tsv
from lvp.events import from_enriched
from lvp.local.broker import broker_command, free_port, stop_process, wait_for_port
from support.profiles import produce, read_topic

THROTTLE_TYPE = "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"


# --- traffic ----------------------------------------------------------------------------------------
def random_session(
    viewer_id: str, start_ms: int, rng: random.Random, min_events: int = 50
) -> MediaSessionBuilder:
    """A varied media session of at least ``min_events`` events: ads (completed, skipped,
    clicked), pauses, seeks, stalls, replays, errors, setting changes, pings; most end."""
    b = MediaSessionBuilder(
        viewer_id,
        start_ms,
        useragent=rng.choice((DESKTOP_UA, MOBILE_UA)),
        id_column=rng.choice(("domain_userid", "user_id")),
        duration_s=rng.choice((300.0, 596.0, 1800.0)),
        label=rng.choice(("Big Buck Bunny", "Sintel", "Tears of Steel")),
    )
    b.page_view().wait(rng.uniform(0.3, 2.0)).ready().wait(rng.uniform(0.2, 1.0))
    n_ads = 0

    def ads() -> list[Ad]:
        nonlocal n_ads
        pod = []
        for _ in range(rng.randint(1, 2)):
            n_ads += 1
            skip = 5.0 if rng.random() < 0.3 else None
            pod.append(
                Ad(f"ad-{n_ads}", rng.choice((6.0, 10.0, 15.0)), skip_at_s=skip, click=rng.random() < 0.2)
            )
        return pod

    if rng.random() < 0.6:
        b.ad_break(ads(), "pre")
    b.play()
    while len(b.rows) < min_events:
        b.wait(rng.uniform(1.0, 20.0))
        r = rng.random()
        if r < 0.28:
            b.ping()
        elif r < 0.42:
            b.pause().wait(rng.uniform(1.0, 15.0)).play()
        elif r < 0.50:
            b.seek(rng.uniform(0, b.duration_s * 0.9))
        elif r < 0.58:
            b.buffer(rng.uniform(0.3, 4.0))
        elif r < 0.65:
            b.ad_break(ads())
        elif r < 0.70:
            b.percent_progress(rng.choice((10, 25, 50, 75, 90)))
        elif r < 0.74:
            b.volume_change(rng.randint(0, 100), muted=rng.random() < 0.2)
        elif r < 0.77:
            b.quality_change(rng.choice(("480p", "720p", "1080p")))
        elif r < 0.80:
            b.rate(rng.choice((1.0, 1.25, 1.5)))
        elif r < 0.83:
            b.error(str(rng.randint(1, 4)), "recovered", "MEDIA_ERR_NETWORK")
        elif r < 0.88:
            b.page_ping()
        elif r < 0.91:
            b.end().wait(rng.uniform(2.0, 10.0)).play()  # watches it again
        else:
            b.fullscreen_change(rng.random() < 0.5)
    if rng.random() < 0.7:
        b.end()
    return b


def replay(prefix: str, viewers: int, events: int, start_ms: int, seed: int) -> list[tuple[str, str]]:
    """Exactly ``events`` (key, enriched TSV) pairs of ``viewers`` varied sessions, in collector
    order (later sessions start later; the replay ends wherever ``events`` is reached)."""
    rng = random.Random(seed)
    per = -(-events // viewers)
    builders = [
        random_session(f"{prefix}-{i:04d}", start_ms + rng.randint(0, 600_000), rng, per)
        for i in range(viewers)
    ]
    pairs = interleave(builders)
    assert len(pairs) >= events
    return pairs[:events]


# --- Kafka --------------------------------------------------------------------------------------------
class CommittedOffsets:
    """The consumer group's committed offsets on the good topic, read with one long-lived client
    (it never joins the group)."""

    def __init__(self, settings: Settings) -> None:
        self._consumer = Consumer(
            settings.kafka_config(**{"group.id": settings.consumer_group, "enable.auto.commit": False})
        )
        self._tps = [TopicPartition(settings.topic_good, p) for p in range(settings.topic_partitions)]

    def offsets(self) -> dict[int, int]:
        return {tp.partition: tp.offset for tp in self._consumer.committed(self._tps, timeout=10)}

    def total(self) -> int:
        return sum(o for o in self.offsets().values() if o > 0)

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> CommittedOffsets:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def broker_behind_proxy(log_path: Path | None = None) -> Iterator[tuple[str, TcpProxy]]:
    """A private in-memory Tansu broker that listens on one port but advertises the port of a
    :class:`TcpProxy` in front of it: every client connection (bootstrap and broker) goes through
    the proxy, so ``proxy.cut()`` is a broker outage that keeps the broker's data."""
    listen = free_port()
    proxy = TcpProxy("127.0.0.1", listen)
    cmd = broker_command("127.0.0.1", listen)
    cmd[cmd.index("--advertised-listener-url") + 1] = f"tcp://127.0.0.1:{proxy.port}"
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port("127.0.0.1", listen, proc=proc)
        yield proxy.address, proxy
    finally:
        proxy.close()
        stop_process(proc)
        if log_path:
            out.close()  # type: ignore[union-attr]


# --- DynamoDB -----------------------------------------------------------------------------------------
class ThrottlingProxy:
    """An HTTP proxy in front of a DynamoDB endpoint that answers a fraction of the chosen
    operations with HTTP 400 ``ProvisionedThroughputExceededException`` (as DynamoDB does when a
    table's capacity is exceeded) and forwards everything else unchanged."""

    def __init__(
        self, target_url: str, operations: Collection[str] = ("BatchWriteItem",), seed: int = 7
    ) -> None:
        target = urlsplit(target_url)
        self.target = (target.hostname or "127.0.0.1", target.port or 80)
        self.operations = frozenset(operations)
        self.fraction = 0.0
        self.throttled = 0
        self.forwarded = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            upstream: http.client.HTTPConnection | None = None

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                op = (self.headers.get("X-Amz-Target") or "").rsplit(".", 1)[-1]
                if op in proxy.operations and proxy._throttle():
                    self._answer(
                        400,
                        [("Content-Type", "application/x-amz-json-1.0")],
                        orjson.dumps(
                            {
                                "__type": THROTTLE_TYPE,
                                "message": "Rate of requests exceeds the allowed throughput.",
                            }
                        ),
                    )
                    return
                status, headers, data = self._forward(body)
                self._answer(status, headers, data)

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")
                }
                for attempt in (1, 2):  # a pooled upstream connection may have been closed
                    if self.upstream is None:
                        self.upstream = http.client.HTTPConnection(*proxy.target, timeout=30)
                    try:
                        self.upstream.request("POST", self.path, body=body, headers=headers)
                        resp = self.upstream.getresponse()
                        data = resp.read()
                    except (OSError, http.client.HTTPException):
                        self.upstream.close()
                        self.upstream = None
                        if attempt == 2:
                            raise
                        continue
                    with proxy._lock:
                        proxy.forwarded += 1
                    skip = ("connection", "keep-alive", "transfer-encoding", "content-length")
                    return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in skip], data
                raise AssertionError("unreachable")

            def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="throttling-proxy", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _throttle(self) -> bool:
        with self._lock:
            hit = self.fraction > 0 and self._rng.random() < self.fraction
            if hit:
                self.throttled += 1
            return hit

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- results ------------------------------------------------------------------------------------------
def tally(got: dict[str, Any], want: dict[str, Any]) -> tuple[int, int]:
    """(lost, double-counted) events: per viewer, the shortfall / excess of the stored profile's
    ``events`` counter against the reference."""
    lost = double = 0
    for vid in set(got) | set(want):
        g = ((got.get(vid) or {}).get("profile") or {}).get("events") or 0
        w = ((want.get(vid) or {}).get("profile") or {}).get("events") or 0
        lost += max(0, w - g)
        double += max(0, g - w)
    return lost, double


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` in a Prometheus
    exposition ``text`` (0 when absent)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def topic_event_counts(settings: Settings) -> dict[str, int]:
    """Distinct event ids per viewer on the good topic (for failure messages)."""
    events = {}
    for _key, value in read_topic(settings, settings.topic_good):
        ev = from_enriched(from_tsv(value))
        events[ev.event_id] = ev.viewer_id
    return dict(Counter(events.values()))


class Feeder(threading.Thread):
    """Produces ``pairs`` at a steady pace: one chunk per second for ``over_s`` seconds."""

    def __init__(self, settings: Settings, pairs: list[tuple[str, str]], over_s: float) -> None:
        super().__init__(name="feeder", daemon=True)
        self.settings = settings
        self.pairs = pairs
        self.chunks = max(1, int(over_s))
        self.produced = 0

    def run(self) -> None:
        size = -(-len(self.pairs) // self.chunks)
        started = time.monotonic()
        for n, i in enumerate(range(0, len(self.pairs), size)):
            time.sleep(max(0.0, started + n - time.monotonic()))
            chunk = self.pairs[i : i + size]
            produce(self.settings, chunk)
            self.produced += len(chunk)


@contextlib.contextmanager
def feeding(settings: Settings, pairs: list[tuple[str, str]], over_s: float) -> Iterator[Feeder]:
    """A :class:`Feeder` running for the block; joined when it ends."""
    feeder = Feeder(settings, pairs, over_s)
    feeder.start()
    try:
        yield feeder
    finally:
        feeder.join(over_s + 60)
