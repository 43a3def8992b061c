"""Limits of the collector (issue 7, hostile input): slow clients, body and query sizes, events per
request and the per-IP rate limit, against the real Tansu broker.

Already covered elsewhere (not repeated here): a POST body over LVP_MAX_BODY_BYTES with a
Content-Length (413 + size_violation bad row) and more than LVP_MAX_EVENTS_PER_REQUEST events
(413) in ``test_collector_routes.py::test_bad_posts_become_bad_rows``; 429 + Retry-After per
client with other clients unaffected in ``test_collector_routes.py::
test_any_origin_and_rate_limit_per_client``; SSE connections per token (429 above
LVP_SSE_MAX_PER_TOKEN, another token unaffected, a closed stream frees its slot) in
``test_viewer_auth.py::test_sse_connections_are_limited_per_token``.

Slow clients: uvicorn alone has no deadline for a request that arrives slowly (only for idle
kept-alive connections), so `lvp collector` runs a guarded protocol (``collector.server``) and the
tp2 route has its own body deadline (LVP_REQUEST_TIMEOUT_S, 408). The socket tests pace their
writes (a slow client is slow by definition) and check *that* the server cut them off, never how
fast.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest
from collector_server import read_topic, unique
from support.asgi import (
    AsgiHarness,
    ProductionServer,
    call,
    raw_exchange,
    read_response,
    running_app,
    scope_for,
    serve_production,
    status_of,
)

from collector.app import create_app
from lvp.config import Settings
from lvp.kafka import create_topics

KEY = "limits-tests-pseudonym-key-0123456789"
TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def event(marker: str, **extra: str) -> dict[str, str]:
    return {"e": "pv", "tv": "js-4.6.6", "p": "web", "aid": marker, **extra}


def envelope(*events: dict[str, str]) -> bytes:
    return orjson.dumps({"schema": PAYLOAD_DATA, "data": list(events)})


def messages_with(settings: Settings, marker: str) -> tuple[list[bytes], list[dict[str, object]]]:
    """(good lines, bad rows) that mention ``marker``."""
    bs, m = settings.kafka_bootstrap_servers, marker.encode()
    good = [v for _, v in read_topic(bs, settings.topic_good, 0, lambda v: m in v, timeout=15)]
    bad = [orjson.loads(v) for _, v in read_topic(bs, settings.topic_bad, 0, lambda v: m in v, timeout=15)]
    return good, bad


@pytest.fixture
def settings(broker: str) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        base: dict[str, object] = {
            "kafka_bootstrap_servers": broker,
            "topic_good": unique("limits-good"),
            "topic_bad": unique("limits-bad"),
            "pseudonym_key": KEY,
            "max_body_bytes": 20_000,
            "max_events_per_request": 10,
            "request_timeout_s": 1.0,
        }
        base.update(overrides)
        s = Settings.from_env({}, **base)
        create_topics(s)
        return s

    return make


@pytest.fixture
def production(settings: Callable[..., Settings]) -> Iterator[ProductionServer]:
    with serve_production(settings()) as server:
        yield server


# --- request timeouts (slowloris) ---------------------------------------------------------------


def test_a_body_that_never_completes_gets_408_and_no_bad_row(settings: Callable[..., Settings]) -> None:
    """In process (any ASGI server): the tp2 route stops waiting for a body after
    LVP_REQUEST_TIMEOUT_S and answers 408 with Connection: close; nothing was received, so
    nothing is written to either topic."""
    s = settings(request_timeout_s=0.3)
    marker = unique("slow-body")
    body = envelope(event(marker))
    with running_app(create_app(s)) as harness:
        scope = scope_for("POST", TP2, headers=[(b"content-length", b"%d" % len(body))])
        r = harness.run(call(harness.app, scope, [body[:10]], stall_after_chunks=True))
        assert r.status == 408
        assert r.header("connection") == "close"
        ok = harness.request("POST", TP2, chunks=[body[:10], body[10:]])  # the same body, complete
        assert ok.status == 200
        metrics = harness.request("GET", "/metrics").body.decode()
    assert 'lvp_collector_requests_total{code="408",route="tp2"} 1.0' in metrics
    good, bad = messages_with(s, marker)
    assert len(good) == 1 and bad == []  # the completed request only


def test_slow_clients_are_cut_off_and_others_are_served(production: ProductionServer) -> None:
    """Under the production server: a connection that sends nothing, one that trickles its
    headers, one that trickles a tp2 body and one that trickles the body of a route that does
    not read it are all closed by the server (408 where no response was under way), while other
    clients are served meanwhile."""
    host, port = production.host, production.port
    results: dict[str, bytes] = {}
    cut_off: dict[str, bool] = {}

    def silent() -> None:
        with socket.create_connection((host, port)) as sock:
            results["silent"] = read_response(sock, timeout=30)

    def trickle(name: str, head: bytes, drip: bytes) -> None:
        """Send ``head``, then ``drip`` one byte at a time until the server closes."""
        with socket.create_connection((host, port)) as sock:
            sock.sendall(head)
            sock.settimeout(0.1)
            got = b""
            deadline = time.monotonic() + 30
            for byte in drip * 100:
                try:
                    sock.send(bytes([byte]))
                except OSError:  # the server closed the connection
                    cut_off[name] = True
                    break
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:  # the pace of the drip: one byte per 0.1 s
                    continue
                except OSError:
                    cut_off[name] = True
                    break
                if not chunk:
                    cut_off[name] = True
                    break
                got += chunk
                if time.monotonic() > deadline:
                    break
            results[name] = got

    body_head = b"POST " + TP2.encode() + b" HTTP/1.1\r\nHost: c\r\nContent-Length: 100000\r\n\r\n{"
    threads = [
        threading.Thread(target=silent),
        threading.Thread(
            target=trickle, args=("headers", b"GET /health HTTP/1.1\r\nHost: c\r\nX-Slow: ", b"a")
        ),
        threading.Thread(target=trickle, args=("tp2-body", body_head, b"x")),
        threading.Thread(
            target=trickle,
            args=("health-body", b"GET /health HTTP/1.1\r\nHost: c\r\nContent-Length: 100000\r\n\r\n", b"x"),
        ),
    ]
    for t in threads:
        t.start()
    # meanwhile, an ordinary client is served
    with httpx.Client(base_url=production.url, timeout=10) as http:
        r = http.post(TP2, content=envelope(event(unique("meanwhile"))))
        assert r.status_code == 200
    for t in threads:
        t.join(60)
    assert status_of(results["silent"]) == 408  # then closed (read_response returned)
    assert cut_off.get("headers") and status_of(results["headers"]) == 408
    assert cut_off.get("tp2-body") and status_of(results["tp2-body"]) == 408
    assert b'"request timeout"' in results["tp2-body"]
    # /health answered at once (it does not read bodies); the unread rest then ran into the deadline
    assert cut_off.get("health-body") and status_of(results["health-body"]) == 200
    print(
        "FIGURE limits slowloris: 4 slow connections (silent, slow headers, slow tp2 body, slow unread "
        "body) cut off by the server, an ordinary client served meanwhile"
    )


def test_oversized_request_headers_get_431(production: ProductionServer) -> None:
    """httptools sets no limit on request headers: the guard answers 431 past 64 KiB."""
    big = b"GET /health HTTP/1.1\r\nHost: c\r\nCookie: sp=" + b"a" * 200_000 + b"\r\n\r\n"
    assert status_of(raw_exchange(production.host, production.port, big)) == 431
    many = (
        b"GET /health HTTP/1.1\r\nHost: c\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(20_000)) + b"\r\n"
    )
    assert status_of(raw_exchange(production.host, production.port, many)) == 431
    normal = b"GET /health HTTP/1.1\r\nHost: c\r\nCookie: sp=" + b"a" * 4_000 + b"\r\n\r\n"
    assert status_of(raw_exchange(production.host, production.port, normal)) == 200


# --- sizes ----------------------------------------------------------------------------------------


def test_chunked_body_over_the_limit_is_refused_without_reading_it_all(production: ProductionServer) -> None:
    """No Content-Length (chunked upload): the collector stops reading past LVP_MAX_BODY_BYTES,
    answers 413 with a size_violation bad row (body truncated) and closes the connection
    instead of reading the rest of a 20 MB upload."""
    marker = unique("chunked-big")
    pieces = [b'{"schema":"' + PAYLOAD_DATA.encode() + b'","data":[{"aid":"' + marker.encode() + b'","x":"']
    pieces += [b"a" * 65536] * 320  # 20 MiB

    def chunks() -> Iterator[bytes]:
        yield from pieces

    with httpx.Client(base_url=production.url, timeout=30) as http:
        try:
            r = http.post(TP2, content=chunks())
        except httpx.TransportError:  # the server may close while the client is still sending
            r = None
    if r is not None:
        assert r.status_code == 413
        assert r.json()["error"] == "size_violation" and r.headers["connection"] == "close"
    good, [row] = messages_with(production.app.state.collector.settings, marker)
    assert good == []
    assert str(row["schema"]).split("/")[1] == "size_violation"
    payload = row["data"]["payload"]  # type: ignore[index]
    assert payload["bodyTruncated"] is True
    [failure] = row["data"]["failure"]["messages"]  # type: ignore[index]
    assert failure["maximumAllowedSizeBytes"] == 20_000 and failure["actualSizeBytes"] > 20_000


@pytest.mark.parametrize("declared", [b"10000000000000000000", b"18446744073709551615"])
def test_an_absurd_content_length_is_reported_not_a_crash(
    production: ProductionServer, declared: bytes
) -> None:
    """A Content-Length beyond int64 (found by the fuzz tests) with a body over the limit: 413
    and a size_violation bad row that reports the largest size JSON carries."""
    marker = unique("absurd-length")
    body = b'{"schema":"' + PAYLOAD_DATA.encode() + b'","data":[{"aid":"' + marker.encode() + b'","x":"'
    body += b"a" * 30_000
    head = b"POST " + TP2.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    response = raw_exchange(
        production.host, production.port, head + b"Content-Length: " + declared + b"\r\n\r\n" + body
    )
    assert status_of(response) == 413, response[:300]
    good, [row] = messages_with(production.app.state.collector.settings, marker)
    assert good == [] and str(row["schema"]).split("/")[1] == "size_violation"
    [failure] = row["data"]["failure"]["messages"]  # type: ignore[index]
    assert failure["actualSizeBytes"] == 2**63 - 1


def test_query_string_over_the_limit(settings: Callable[..., Settings]) -> None:
    """GET /i with a query string over LVP_MAX_BODY_BYTES: 413 and a size_violation bad row."""
    s = settings(max_body_bytes=5_000)
    marker = unique("big-query")
    with running_app(create_app(s)) as harness:
        query = f"e=pv&tv=t&p=web&aid={marker}&x={'a' * 6_000}".encode()
        r = harness.request("GET", "/i", query=query)
        assert r.status == 413
        small = harness.request("GET", "/i", query=f"e=pv&tv=t&p=web&aid={marker}-ok".encode())
        assert small.status == 200
    good, bad = messages_with(s, marker)
    assert len(good) == 1 and [str(b["schema"]).split("/")[1] for b in bad] == ["size_violation"]


def test_events_per_request_limit_is_inclusive(settings: Callable[..., Settings]) -> None:
    """Exactly LVP_MAX_EVENTS_PER_REQUEST events are accepted (one more is 413: tested in
    test_collector_routes.py)."""
    s = settings(max_events_per_request=10)
    marker = unique("ten")
    with running_app(create_app(s)) as harness:
        assert harness.request("POST", TP2, chunks=[envelope(*[event(marker)] * 10)]).status == 200
        assert harness.request("POST", TP2, chunks=[envelope(*[event(marker + "x")] * 11)]).status == 413
    good, _ = messages_with(s, marker)
    assert len(good) == 10


# --- the per-IP rate limit --------------------------------------------------------------------------


def test_rate_limit_from_the_environment(settings: Callable[..., Settings], broker: str) -> None:
    """LVP_RATE_LIMIT_PER_IP set in the environment limits every event route per client IP
    (POST and GET share a client's allowance): 429 with Retry-After, no bad row and no cookie
    for a refused request, other clients unaffected, and the client passes again after waiting
    Retry-After."""
    base = settings()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": broker,
        "LVP_TOPIC_GOOD": base.topic_good,
        "LVP_TOPIC_BAD": base.topic_bad,
        "LVP_PSEUDONYM_KEY": KEY,
        "LVP_RATE_LIMIT_PER_IP": "0.5",  # one request every 2 s (burst 1)
    }
    s = Settings.from_env(env)
    assert s.rate_limit_per_ip == 0.5
    marker = unique("rate")
    client_a, client_b = ("198.51.100.7", 1000), ("198.51.100.8", 1000)
    with running_app(create_app(s)) as harness:
        h: AsgiHarness = harness
        assert h.request("POST", TP2, chunks=[envelope(event(marker))], client=client_a).status == 200
        # the same client's next request, by GET, within its 2 s: refused
        r = h.request("GET", "/i", query=f"e=pv&tv=t&p=web&aid={marker}-refused".encode(), client=client_a)
        assert r.status == 429 and r.header("set-cookie") is None
        retry_after = int(r.header("retry-after") or 0)
        assert retry_after >= 1
        # another client is not affected
        assert h.request("POST", TP2, chunks=[envelope(event(marker))], client=client_b).status == 200
        # X-Forwarded-For names the client (the collector's own proxy-header handling)
        fwd = [(b"x-forwarded-for", b"203.0.113.50")]
        forwarded = h.request("POST", TP2, headers=fwd, chunks=[envelope(event(marker))], client=client_a)
        assert forwarded.status == 200
        # after Retry-After the client may send again
        deadline = time.monotonic() + retry_after + 5
        while True:
            again = h.request("POST", TP2, chunks=[envelope(event(marker))], client=client_a)
            if again.status == 200:
                break
            assert again.status == 429 and time.monotonic() < deadline
            time.sleep(0.2)
    good, bad = messages_with(s, marker)
    assert len(good) == 4  # a, b, forwarded, a again
    assert bad == []  # refused requests are not bad rows: the tracker retries them
    print(
        f"FIGURE limits rate: LVP_RATE_LIMIT_PER_IP=0.5 -> 2nd request within 2 s: 429, Retry-After {retry_after} s"
    )


def test_collector_command_runs_the_guarded_server() -> None:
    """`lvp collector --request-timeout S` sets LVP_REQUEST_TIMEOUT_S, and the uvicorn options it
    runs with use the guarded protocol (the one the socket tests above exercise)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from collector.server import uvicorn_options
    from lvp.cli import build_parser, settings_from_args

    args = build_parser().parse_args(["collector", "--request-timeout", "3.5"])
    s = settings_from_args(args)
    assert s.request_timeout_s == 3.5
    options = uvicorn_options(s)
    assert issubclass(options["http"], HttpToolsProtocol) and options["http"] is not HttpToolsProtocol
    assert options["access_log"] is False and options["proxy_headers"] is False
