"""Helpers for the viewer's tests and benchmark: the app in a uvicorn server thread, test data
in the contract formats (change messages, DynamoDB items) and a small raw-socket SSE client."""

from __future__ import annotations

import codecs
import hashlib
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

import orjson
import uvicorn
from confluent_kafka import Producer
from starlette.applications import Starlette

from lvp.config import Settings
from lvp.enriched import epoch_of, iso
from lvp.kafka import producer_config
from lvp.local.broker import free_port
from lvp.profile_codec import profile_item
from lvp.tables import history_seq
from viewer.cli import uvicorn_options


@contextmanager
def serve_in_thread(
    app: Starlette, host: str = "127.0.0.1", timeout: float = 20.0, port: int = 0
) -> Iterator[str]:
    """Yields the base URL once the server accepts requests; stops it on exit."""
    port = port or free_port(host)
    # the production options (no access log: query strings may carry tickets), asyncio loop
    options: dict[str, Any] = {**uvicorn_options(), "loop": "asyncio", "timeout_graceful_shutdown": 2}
    config = uvicorn.Config(app, host=host, port=port, lifespan="on", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("viewer server exited during startup")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError("viewer server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def create_viewer_state_table(settings: Settings) -> None:
    """The ``LVP_TABLE_VIEWER_STATE`` table alone (privacy budget, used tickets); no-op if it exists."""
    from lvp.dynamo import dynamodb_client
    from lvp.tables import viewer_state_table

    client = dynamodb_client(settings)
    with suppress(client.exceptions.ResourceInUseException):
        client.create_table(**viewer_state_table(settings.table_viewer_state))
    client.get_waiter("table_exists").wait(
        TableName=settings.table_viewer_state, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
    )


# --- test data in the contract formats ----------------------------------------------------------
def now_iso(offset_s: float = 0.0) -> str:
    return iso(time.time() + offset_s)


def make_profile(viewer_id: str, status: str = "watching", **fields: object) -> dict[str, object]:
    """A complete profile in the API shape (without ``active``), as `lvp profiles` publishes it."""
    seen = fields.pop("last_seen", None) or now_iso()
    profile: dict[str, object] = {
        "viewer_id": viewer_id,
        "status": status,
        "app_id": "demo-site",
        "media_label": "Big Buck Bunny",
        "media_session_id": "sess-" + viewer_id[:8],
        "position_s": 42.5,
        "duration_s": 596.0,
        "percent_progress": 7,
        "ad": None,
        "plays": 1,
        "pauses": 0,
        "seeks": 0,
        "ad_breaks": 0,
        "ads_started": 0,
        "ads_completed": 0,
        "ads_skipped": 0,
        "ads_clicked": 0,
        "buffer_events": 0,
        "errors": 0,
        "play_time_s": 40.0,
        "paused_time_s": 0.0,
        "ad_time_s": 0.0,
        "buffering_time_s": 0.0,
        "startup_time_s": 1.2,
        "first_seen": seen,
        "last_seen": seen,
        "last_event_id": "00000000-0000-4000-8000-000000000000",
        "last_event_name": "play",
        "events": 5,
        "device_class": "desktop",
        "last_error": None,
        "playback_rate": 1.0,
        "volume": 80,
        "muted": False,
        "fullscreen": False,
        "quality": "1080p",
    }
    profile.update(fields)
    return profile


_PRODUCERS: dict[str, Producer] = {}


def produce_changes(settings: Settings, changes: list[tuple[str, dict[str, object] | None]]) -> None:
    """Publish changes to LVP_TOPIC_CHANGES exactly as the profiles consumer does."""
    key = settings.kafka_bootstrap_servers
    producer = _PRODUCERS.get(key)
    if producer is None:
        # kept for the whole run; quiet once the session broker has gone away at exit
        producer = _PRODUCERS[key] = Producer(producer_config(settings, log_level=2))
    for viewer_id, profile in changes:
        value = None if profile is None else orjson.dumps(profile)
        producer.produce(settings.topic_changes, key=viewer_id.encode(), value=value)
    if producer.flush(15) != 0:
        raise RuntimeError("changes not delivered")


def put_profile_item(client: Any, settings: Settings, profile: dict[str, object], shards: int = 8) -> None:
    """Write ``profile`` into the profiles table as `lvp profiles` writes it
    (:func:`lvp.profile_codec.profile_item`), with an opaque engine state."""
    item = profile_item(
        str(profile["viewer_id"]),
        profile,
        '{"engine": "opaque"}',
        retention_s=30 * 86400,
        shards=shards,
        now=time.time(),
    )
    client.put_item(TableName=settings.table_profiles, Item=item)


def put_history_item(
    client: Any,
    settings: Settings,
    viewer_id: str,
    at: str,
    status: str,
    prev_status: str | None,
    event_name: str,
) -> None:
    ms = int((epoch_of(at) or 0) * 1000)
    event_id = f"ev-{ms}-{status}"
    item = {
        "viewer_id": {"S": viewer_id},
        "seq": {"S": history_seq(ms, event_id)},
        "at": {"S": at},
        "status": {"S": status},
        "event_name": {"S": event_name},
        "event_id": {"S": event_id},
        "ttl": {"N": str(ms // 1000 + 30 * 86400)},
    }
    if prev_status:
        item["prev_status"] = {"S": prev_status}
    client.put_item(TableName=settings.table_history, Item=item)


# --- a minimal SSE client over a raw socket (tests can close it from any thread) ----------------
class SSEEvent:
    __slots__ = ("data", "event", "id", "received_at")

    def __init__(self, event: str, data: str, id: str | None, received_at: float) -> None:
        self.event = event
        self.data = data
        self.id = id
        self.received_at = received_at

    def json(self) -> Any:
        return orjson.loads(self.data)

    def __repr__(self) -> str:
        return f"SSEEvent({self.event!r}, id={self.id!r}, {len(self.data)} bytes)"


class SSEStream:
    """``GET path`` with ``headers``; parses status, headers, chunked body and SSE events."""

    def __init__(
        self,
        base_url: str,
        path: str,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        rcvbuf: int | None = None,
    ) -> None:

        u = urlsplit(base_url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((u.hostname or "127.0.0.1", u.port or 80))
        lines = [f"GET {path} HTTP/1.1", f"Host: {u.netloc}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self._raw = b""
        self._text = ""
        self._scan_from = 0
        self._pending_cr = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.retry: int | None = None
        self.closed = False
        head = self._read_until(b"\r\n\r\n", timeout)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {}
        for line in header_lines:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"

    def _recv(self, deadline: float) -> bool:

        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except OSError:
            self.closed = True
            return False
        if not data:
            self.closed = True
            return False
        self._raw += data
        return True

    def _read_until(self, marker: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self._raw:
            if not self._recv(deadline):
                raise TimeoutError(f"no {marker!r} within {timeout}s")
        head, _, rest = self._raw.partition(marker)
        self._raw = rest
        return head

    def body(self, timeout: float = 10.0) -> bytes:
        """The whole body of a non-streaming response (e.g. a 401 or 429)."""
        length = int(self.headers.get("content-length", "0") or 0)
        deadline = time.monotonic() + timeout
        while len(self._raw) < length and self._recv(deadline):
            pass
        return self._raw[:length]

    def _dechunk(self) -> None:
        """Move complete chunks from the socket buffer to the text buffer (linear time)."""
        raw = self._raw
        pos = 0
        pieces: list[bytes] = []
        if not self.chunked:
            pieces.append(raw)
            pos = len(raw)
        else:
            while True:
                idx = raw.find(b"\r\n", pos)
                if idx < 0:
                    break
                size = int(raw[pos:idx].split(b";")[0] or b"0", 16)
                end = idx + 2 + size + 2
                if len(raw) < end:
                    break
                pieces.append(raw[idx + 2 : idx + 2 + size])
                pos = end
                if size == 0:
                    self.closed = True
                    break
        if pos:
            self._raw = raw[pos:]
        if pieces:
            text = self._pending_cr + self._decoder.decode(b"".join(pieces))
            self._pending_cr = ""
            if text.endswith("\r"):  # a CRLF may be split across pieces
                text, self._pending_cr = text[:-1], "\r"
            self._text += text.replace("\r\n", "\n")

    def _parse_one(self) -> SSEEvent | None:
        while True:
            sep_at = self._text.find("\n\n", self._scan_from)
            if sep_at < 0:
                self._scan_from = max(0, len(self._text) - 1)
                return None
            block = self._text[:sep_at]
            self._text = self._text[sep_at + 2 :]
            self._scan_from = 0
            event, data, ev_id = "message", [], None
            for line in block.split("\n"):
                if not line or line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    ev_id = value
                elif name == "retry" and value.isdigit():
                    self.retry = int(value)
            if data:
                return SSEEvent(event, "\n".join(data), ev_id, time.monotonic())

    def next_event(self, timeout: float = 10.0) -> SSEEvent | None:
        """The next event, or None if none arrives in time or the stream ended."""
        deadline = time.monotonic() + timeout
        while True:
            self._dechunk()
            ev = self._parse_one()
            if ev is not None:
                return ev
            if self.closed or not self._recv(deadline):
                if self._raw:
                    self._dechunk()
                    return self._parse_one()
                return None

    def wait_for(self, predicate: Callable[[SSEEvent], bool], timeout: float = 10.0) -> SSEEvent | None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ev = self.next_event(left)
            if ev is None:
                return None
            if predicate(ev):
                return ev

    def close(self) -> None:

        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def __enter__(self) -> SSEStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- realistic demo viewers (browser test, README screenshot, benchmark) ------------------------
DEMO_MEDIA: tuple[tuple[str, float], ...] = (
    ("Big Buck Bunny", 596.5),
    ("Sintel", 888.0),
    ("Tears of Steel", 734.1),
    ("Elephants Dream", 653.8),
    ("Cosmos Laundromat", 725.0),
    ("Spring", 464.0),
    ("Agent 327: Operation Barbershop", 231.0),
    ("Caminandes: Llamigos", 150.0),
)
DEMO_ADS: tuple[tuple[str, str], ...] = (
    ("Acme Running Shoes", "ad-acme-15"),
    ("Nordic Coffee Roasters", "ad-nordic-30"),
    ("Voltra EV", "ad-voltra-20"),
)
DEMO_STATUSES = ("watching",) * 7 + ("watching_ad",) * 2 + ("paused",) * 2 + ("buffering", "idle")


def demo_viewer(i: int, now: float, key: str = "demo") -> dict[str, object]:
    """A plausible profile for viewer number ``i`` (deterministic for a given ``i``)."""
    rng = random.Random(i * 7919 + 17)
    vid = hashlib.sha256(f"{key}-{i}".encode()).hexdigest()
    status = DEMO_STATUSES[i % len(DEMO_STATUSES)] if i < 1000 else rng.choice(DEMO_STATUSES)
    title, length = DEMO_MEDIA[rng.randrange(len(DEMO_MEDIA))] if status != "idle" else (None, None)
    position = round(rng.uniform(0.05, 0.95) * length, 1) if length else None
    play = round((position or 0) * rng.uniform(0.9, 1.1), 1)
    buffering = round(play * rng.choice((0.0, 0.0, 0.01, 0.02, 0.05)), 1)
    ad_breaks = rng.randint(0, 2) if length else 0
    ads_started = ad_breaks + (1 if status == "watching_ad" else 0)
    ads_completed = max(0, ads_started - rng.randint(0, 1) - (1 if status == "watching_ad" else 0))
    ad_name, ad_id = DEMO_ADS[rng.randrange(len(DEMO_ADS))]
    errors = 1 if rng.random() < 0.12 else 0
    first = now - rng.uniform(play + 20, play + 400)
    seen = now - rng.uniform(0.5, 25.0)
    return make_profile(
        vid,
        status,
        app_id=rng.choice(("web-player", "web-player", "smart-tv")),
        media_label=title,
        media_session_id=hashlib.md5(f"{vid}-s".encode()).hexdigest()[:16] if title else None,
        position_s=position,
        duration_s=length,
        percent_progress=int(100 * position / length) if position and length else None,
        ad=(
            {"ad_id": ad_id, "name": ad_name, "break_id": f"break-{ad_breaks + 1}"}
            if status == "watching_ad"
            else None
        ),
        plays=rng.randint(1, 3) if title else 0,
        pauses=rng.randint(0, 4) + (1 if status == "paused" else 0),
        seeks=rng.randint(0, 6),
        ad_breaks=ad_breaks,
        ads_started=ads_started,
        ads_completed=ads_completed,
        ads_skipped=max(0, ads_started - ads_completed - (1 if status == "watching_ad" else 0)),
        ads_clicked=1 if rng.random() < 0.1 else 0,
        buffer_events=rng.randint(0, 3) + (1 if status == "buffering" else 0),
        errors=errors,
        play_time_s=play,
        paused_time_s=round(rng.uniform(0, 90), 1) if status == "paused" else 0.0,
        ad_time_s=round(ads_completed * 15.0 + (7.0 if status == "watching_ad" else 0), 1),
        buffering_time_s=buffering,
        startup_time_s=round(rng.lognormvariate(0.1, 0.45), 2) if title else None,
        first_seen=iso(first),
        last_seen=iso(seen),
        last_event_name={
            "watching": "ping",
            "watching_ad": "ad_start",
            "paused": "pause",
            "buffering": "buffer_start",
            "idle": "ready",
        }[status],
        events=rng.randint(8, 240),
        device_class=rng.choice(("desktop", "desktop", "mobile", "tablet", "tv")),
        last_error={"code": "MEDIA_ERR_NETWORK", "message": "segment request timed out"} if errors else None,
        playback_rate=rng.choice((1.0, 1.0, 1.0, 1.25, 1.5)),
        volume=rng.choice((100, 80, 65, 40)),
        muted=rng.random() < 0.1,
        fullscreen=rng.random() < 0.3,
        quality=rng.choice(("1080p", "720p", "1440p", "480p")) if title else None,
    )
