"""collector/routes.py's one refusal path (``Refused``, ``Collector._refuse``), row by row: what is
answered, with which headers, and what is published before the answer. A narrow unit test: the
sink below records what the routes hand it (or fails like Kafka would); the real broker path of
the same refusals is in test_collector_routes.py and test_limits.py."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import orjson
import pytest
from support.asgi import AsgiHarness, AsgiResponse, running_app

from collector.app import create_app
from collector.protocol import PAYLOAD_DATA_PREFIX
from collector.routes import TP2_PATH
from collector.sink import Message, SinkUnavailable
from lvp.config import Settings

KEY = "k" * 32
ENVELOPE = PAYLOAD_DATA_PREFIX + "0-4"
ORIGIN = "https://player.example"


class RecordingSink:
    """Acknowledges at once and keeps what was published; ``fail`` makes every publish fail."""

    def __init__(self) -> None:
        self.published: list[Message] = []
        self.healthy = True
        self.fail = False

    def start(self) -> None: ...

    def close(self) -> None: ...

    def queue_depth(self) -> int:
        return 0

    async def publish(self, messages: Sequence[Message]) -> None:
        if self.fail:
            raise SinkUnavailable("delivery failed: broker gone")
        self.published.extend(messages)


class Client:
    def __init__(self, harness: AsgiHarness) -> None:
        self.harness = harness

    def post(self, body: bytes, origin: str | None = None) -> AsgiResponse:
        headers = [(b"content-type", b"application/json")]
        if origin:
            headers.append((b"origin", origin.encode()))
        return self.harness.request("POST", TP2_PATH, headers=headers, chunks=[body])

    def pixel(self, query: bytes) -> AsgiResponse:
        return self.harness.request("GET", "/i", query)


@pytest.fixture
def app() -> Iterator[tuple[Client, RecordingSink]]:
    settings = Settings.from_env(
        {},
        pseudonym_key=KEY,
        cors_origins=ORIGIN,
        max_body_bytes=4096,
        max_events_per_request=2,
        topic_good="good",
        topic_bad="bad",
    )
    sink = RecordingSink()
    with running_app(create_app(settings, sink=sink)) as harness:  # type: ignore[arg-type]
        yield Client(harness), sink


def _event(i: int) -> dict[str, str]:
    return {"e": "pv", "p": "web", "tv": "js-4.0.1", "eid": f"00000000-0000-4000-8000-00000000000{i}"}


def _body(n: int) -> bytes:
    return orjson.dumps({"schema": ENVELOPE, "data": [_event(i) for i in range(n)]})


# (request body, origin, status, bad row type published before the answer or None, headers)
ROWS: list[tuple[str, bytes, str | None, int, str | None, dict[str, str]]] = [
    ("accepted", _body(1), ORIGIN, 200, None, {"access-control-allow-origin": ORIGIN}),
    ("not JSON", b"{nope", ORIGIN, 400, "collector_payload_format_violation", {}),
    ("not an envelope", b'{"a": 1}', ORIGIN, 400, "collector_payload_format_violation", {}),
    ("unknown envelope", b'{"schema": "iglu:x/y/jsonschema/1-0-0", "data": [{}]}', None, 400,
     "collector_payload_format_violation", {}),
    ("empty data", orjson.dumps({"schema": ENVELOPE, "data": []}), None, 400,
     "collector_payload_format_violation", {}),
    ("too many events", _body(3), None, 413, "size_violation", {}),
    ("body too big", b"x" * 5000, None, 413, "size_violation", {"connection": "close"}),
    ("origin not allowed", _body(1), "https://evil.example", 403, None, {}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "body", "origin", "status", "bad_row", "headers"), ROWS, ids=[r[0] for r in ROWS]
)
def test_each_refusal_is_answered_once_its_bad_row_is_published(
    app: tuple[Client, RecordingSink],
    name: str,
    body: bytes,
    origin: str | None,
    status: int,
    bad_row: str | None,
    headers: dict[str, str],
) -> None:
    client, sink = app
    r = client.post(body, origin)
    assert r.status == status, r.body
    for header, value in headers.items():
        assert r.header(header) == value
    if status == 403:  # no CORS grant for an origin that is not allowed, nothing kept
        assert r.header("access-control-allow-origin") is None and sink.published == []
        return
    if bad_row is None:
        assert [m[0] for m in sink.published] == ["good"]
        return
    answer = orjson.loads(r.body)
    assert answer["error"] == bad_row and answer["messages"]
    [(topic, _key, value)] = sink.published
    assert topic == "bad" and bad_row in orjson.loads(value)["schema"]
    assert r.header("set-cookie") is not None  # a refused request still gets its network user id


def test_a_bad_row_kafka_cannot_take_makes_a_503_without_a_cookie(app: tuple[Client, RecordingSink]) -> None:
    client, sink = app
    sink.fail = True
    r = client.post(b"{nope", ORIGIN)
    answer = orjson.loads(r.body)
    assert r.status == 503 and r.header("retry-after")
    assert answer["error"] == "unavailable" and "broker gone" in answer["message"]
    assert r.header("set-cookie") is None and sink.published == []
    assert r.header("access-control-allow-origin") == ORIGIN


def test_kafka_unreachable_is_refused_before_the_body_is_read(app: tuple[Client, RecordingSink]) -> None:
    client, sink = app
    sink.healthy = False
    r = client.post(_body(1))
    assert r.status == 503 and r.header("retry-after") and sink.published == []
    r = client.pixel(b"e=pv&p=web&tv=js-4.0.1")
    assert r.status == 503 and sink.published == []
