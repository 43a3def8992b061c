"""lvp.local.http1: the simulator's keep-alive HTTP/1.1 client against real sockets — a scripted
server for the answers a collector, or a proxy in front of it, can give, and the collector
itself."""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest
from collector_server import serve_collector
from support.scripted_http import CLOSE, scripted

from lvp.config import Settings
from lvp.events import PAYLOAD_DATA_SCHEMA
from lvp.local.http1 import Answer, Connection, HttpError
from lvp.local.simulate import TP2_PATH, Viewer


def _ok(body: bytes, *extra: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in extra)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


def test_keep_alive_post_and_the_three_ways_an_answer_ends() -> None:
    """Content-Length, chunked (with an extension and a trailer) and close-delimited answers are
    read whole; requests share a connection until the server says ``Connection: close``."""

    def script(n: int, body: bytes) -> bytes:
        if n == 1:
            return _ok(b"ok:" + body)
        if n == 2:
            return (
                b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\nRetry-After: 1\r\n\r\n"
                b"5;ext=1\r\nbusy \r\n4\r\nnow!\r\n0\r\nX-Trailer: t\r\n\r\n"
            )
        if n == 3:
            return _ok(b"bye", "Connection: close")
        return b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"

    async def run() -> None:
        async with scripted(script) as (srv, url):
            conn = Connection(url)
            a1 = await conn.post(b'{"a":1}')
            a2 = await conn.post(b"x" * 100_000)
            a3 = await conn.post(b"3")
            a4 = await conn.post(b"4")
            conn.close()
            assert (a1.status, a1.body) == (200, b'ok:{"a":1}')
            assert (a2.status, a2.body, a2.headers["retry-after"]) == (503, b"busy now!", "1")
            assert (a3.status, a3.body) == (200, b"bye")
            assert (a4.status, a4.body) == (200, b"until the end")
            assert [c for c, _, _ in srv.requests] == [1, 1, 1, 2]  # a new connection after close
            _, head, body = srv.requests[1]
            assert body == b"x" * 100_000
            assert head.startswith(b"POST /com.snowplowanalytics.snowplow/tp2 HTTP/1.1\r\n")
            assert b"\r\nContent-Length: 100000\r\n" in head
            assert b"\r\nContent-Type: application/json; charset=UTF-8\r\n" in head
            assert b"\r\nHost: 127.0.0.1:" in head

    asyncio.run(run())


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b"", "the connection closed before an answer"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent", "the connection closed in an answer's head"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "a broken answer body"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    ],
)
def test_a_broken_answer_raises_and_the_next_request_reconnects(answer: bytes, why: str) -> None:
    def script(n: int, body: bytes) -> bytes:
        return answer + CLOSE if n == 1 else _ok(b"fine")

    async def run() -> None:
        async with scripted(script) as (srv, url):
            conn = Connection(url)
            with pytest.raises(HttpError, match=why):
                await conn.post(b"1")
            a = await conn.post(b"2")
            conn.close()
            assert (a.status, a.body) == (200, b"fine")
            assert [c for c, _, _ in srv.requests] == [1, 2]

    asyncio.run(run())


def test_a_kept_alive_connection_the_server_closed_is_opened_again_once() -> None:
    """The server closes an idle kept-alive connection (uvicorn does after 5 s): the next request
    goes out again on a new connection, without an error; a fresh connection that closes before
    answering is an error."""

    def script(n: int, body: bytes) -> bytes:
        return _ok(b"first") + CLOSE if n == 1 else b"" if n == 3 else _ok(b"again")

    async def run() -> None:
        async with scripted(script) as (srv, url):
            conn = Connection(url)
            first = await conn.post(b"1")
            await asyncio.sleep(0.05)  # the server has closed it meanwhile
            assert conn._writer is not None  # (the client has not noticed)
            second = await conn.post(b"2")
            conn.close()
            assert (first.body, second.body) == (b"first", b"again")
            assert [(c, body) for c, _, body in srv.requests] == [(1, b"1"), (2, b"2")]
            with pytest.raises(HttpError, match="closed before an answer"):
                await Connection(url).post(b"3")  # a fresh connection: not retried

    asyncio.run(run())


def test_a_silent_server_times_out_and_a_refused_connection_raises() -> None:
    async def run() -> None:
        hang = asyncio.Event()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await hang.wait()
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conn = Connection(f"http://127.0.0.1:{port}/", timeout=0.3)
        with pytest.raises(TimeoutError):
            await conn.post(b"1")
        hang.set()
        server.close()
        await server.wait_closed()
        with pytest.raises(OSError):
            await Connection(f"http://127.0.0.1:{port}/").post(b"1")

    asyncio.run(run())


def test_only_http_urls() -> None:
    for url in ("ftp://example.com/", "127.0.0.1:8080", "http:///path"):
        with pytest.raises(ValueError, match="not an http"):
            Connection(url)
    assert Connection("https://collector.example/x?y=1").port == 443
    assert Connection("https://collector.example/x?y=1").path == "/x?y=1"


def test_against_the_collector(lvp_settings: Settings) -> None:
    """The real server: the collector under uvicorn as `lvp collector` runs it — a tp2 batch
    accepted (200 after Kafka's ack), a body that is not a payload_data envelope refused with a
    reason, both on one kept-alive connection."""
    viewer = Viewer(0, random.Random(1), "http1-test")
    batch = orjson.dumps(
        {"schema": PAYLOAD_DATA_SCHEMA, "data": [viewer.event("ready"), viewer.event("play")]}
    )

    async def run(url: str) -> list[Answer]:
        conn = Connection(url + TP2_PATH)
        try:
            return [await conn.post(batch), await conn.post(b'{"schema": "nope", "data": []}')]
        finally:
            conn.close()

    with serve_collector(lvp_settings) as running:
        ok, refused = asyncio.run(run(running.url))
    assert (ok.status, ok.body) == (200, b"ok")
    assert refused.status == 400 and b"payload_data" in refused.body
