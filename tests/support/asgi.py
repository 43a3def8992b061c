"""Hostile-input test support.

- Calling an ASGI app in process with full control of the request: raw query string bytes, raw
  header bytes (names and values any bytes), the body in chunks, a receive channel that can stall
  (a slow client), and the app's lifespan run once around many requests. Exceptions raised by the
  app propagate to the caller: a handler that lets one escape is a 500 in production.
- :func:`serve_production`: the collector under uvicorn with exactly the options `lvp collector`
  uses (:func:`collector.server.uvicorn_options`), for tests at the HTTP/socket level.
- :func:`raw_exchange`: send raw bytes over a socket and read what comes back.

Used by the fuzz tests (thousands of requests a second, no sockets) and the limit tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from lvp.config import Settings

Headers = Sequence[tuple[bytes, bytes]]


@dataclass
class AsgiResponse:
    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        key = name.lower().encode()
        for k, v in self.headers:
            if k.lower() == key:
                return v.decode("latin-1")
        return None


class IncompleteResponse(AssertionError):
    """The app returned without sending a complete response."""


def scope_for(
    method: str,
    path: str,
    query: bytes = b"",
    headers: Headers = (),
    client: tuple[str, int] | None = ("127.0.0.1", 50000),
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "root_path": "",
        "query_string": query,
        "headers": [(k.lower(), v) for k, v in headers],
        "client": client,
        "server": ("127.0.0.1", 9090),
        "state": {},
    }


async def call(
    app: Callable[..., Awaitable[None]],
    scope: dict[str, Any],
    chunks: Sequence[bytes] = (),
    *,
    stall_after_chunks: bool = False,
) -> AsgiResponse:
    """One request through ``app``. ``chunks`` is the body as the server would deliver it; with
    ``stall_after_chunks`` the client never finishes its body (receive blocks until the app gives
    up or the response is sent, then reports a disconnect)."""
    pending = list(chunks) or [b""]
    out = AsgiResponse(0)
    complete = asyncio.Event()
    started = False

    async def receive() -> dict[str, Any]:
        if pending:
            chunk = pending.pop(0)
            more = bool(pending) or stall_after_chunks
            return {"type": "http.request", "body": chunk, "more_body": more}
        await complete.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            assert not started, "response started twice"
            started = True
            out.status = message["status"]
            out.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            assert started, "body before response start"
            out.body += message.get("body", b"")
            if not message.get("more_body", False):
                complete.set()

    await app(scope, receive, send)
    if not complete.is_set():
        raise IncompleteResponse(f"{scope['method']} {scope['path']}: no complete response")
    return out


class AsgiHarness:
    """An app with its lifespan running on one event loop (``asyncio.Runner``), for many
    synchronous calls (e.g. from hypothesis examples)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.runner = asyncio.Runner()
        self._lifespan: Any = None

    def start(self) -> None:
        self._lifespan = self.app.router.lifespan_context(self.app)
        self.runner.run(self._lifespan.__aenter__())

    def stop(self) -> None:
        try:
            if self._lifespan is not None:
                self.runner.run(self._lifespan.__aexit__(None, None, None))
        finally:
            self.runner.close()

    def run(self, coro: Awaitable[Any]) -> Any:
        return self.runner.run(coro)  # type: ignore[arg-type]

    def request(
        self,
        method: str,
        path: str,
        query: bytes = b"",
        headers: Headers = (),
        chunks: Sequence[bytes] = (),
        client: tuple[str, int] | None = ("127.0.0.1", 50000),
    ) -> AsgiResponse:
        return self.run(call(self.app, scope_for(method, path, query, headers, client), chunks))  # type: ignore[no-any-return]


@contextlib.contextmanager
def running_app(app: Any) -> Iterator[AsgiHarness]:
    harness = AsgiHarness(app)
    harness.start()
    try:
        yield harness
    finally:
        harness.stop()


@dataclass
class ProductionServer:
    host: str
    port: int
    app: Any
    server: uvicorn.Server

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextlib.contextmanager
def serve_production(settings: Settings, **app_kwargs: Any) -> Iterator[ProductionServer]:
    """The collector served as `lvp collector` serves it (guarded httptools protocol, no access
    log, ...): :func:`collector_server.serve_collector`, seen as host and port."""
    from collector_server import serve_collector

    with serve_collector(settings, **app_kwargs) as running:
        host, port = running.url.removeprefix("http://").rsplit(":", 1)
        yield ProductionServer(host, int(port), running.app, running.server)


def raw_exchange(host: str, port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data``, half-close nothing, and read until the server closes the connection or one
    complete response (per its Content-Length) arrived, or ``timeout`` passed."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may answer (and close) before all is sent
            sock.sendall(data)
        return read_response(sock, timeout, head_only=data.startswith(b"HEAD "))


def read_response(sock: socket.socket, timeout: float, head_only: bool = False) -> bytes:
    """What the server sends until it closes the connection, one response is complete (per its
    Content-Length; only its head with ``head_only``) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
        rest = buf
        while rest.startswith(b"HTTP/1.1 100 ") and b"\r\n\r\n" in rest:  # interim responses
            rest = rest.partition(b"\r\n\r\n")[2]
        head, sep, body = rest.partition(b"\r\n\r\n")
        if sep and head_only:
            break
        if sep:
            length = next(
                (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                 if line.lower().startswith(b"content-length:")),
                None,
            )  # fmt: skip
            if length is not None and len(body) >= length:
                break
    return buf


def status_of(response: bytes) -> int | None:
    """The final status code of a raw HTTP/1.x response (after any ``100 Continue``), None when
    there is none."""
    while response.startswith(b"HTTP/1.1 100 "):
        response = response.partition(b"\r\n\r\n")[2]
    if not response.startswith(b"HTTP/1."):
        return None
    parts = response.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
