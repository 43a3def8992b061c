"""How `lvp collector` runs under uvicorn, and a guard against slow clients (slowloris).

uvicorn times out idle keep-alive connections (``timeout_keep_alive``) but has no deadline for a
request that arrives slowly: a client that opens a connection and trickles its headers (or its
body to a route that does not read it) holds the connection and its buffers for ever.
:func:`guarded_httptools` adds that deadline to uvicorn's httptools protocol: from the connection
(or the first byte of the next request on a kept-alive one) the headers must be complete within
``LVP_REQUEST_TIMEOUT_S``, and then the rest of the request within the same time again (and a
little more, up to a second, so that the tp2 route's own body timeout answers 408 first). Past
a deadline the client gets ``408 Request Timeout`` when no response is under way, and the
connection is closed. httptools has no limit on the size of request headers either: past
:data:`MAX_HEADER_BYTES` the client gets ``431`` and the connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lvp.config import Settings

#: Most bytes of request headers (request line included) a client may send; 431 above.
MAX_HEADER_BYTES = 64 * 1024

TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 15\r\n"
    b"connection: close\r\n\r\nrequest timeout"
)
TOO_LARGE_RESPONSE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
    b"content-length: 24\r\nconnection: close\r\n\r\nrequest headers too large"
)


def guarded_httptools(timeout_s: float, max_header_bytes: int = MAX_HEADER_BYTES) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with per-request read deadlines and a header size limit
    (see the module doc)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _phase = "idle"  # idle (before a request) | headers | body
        _header_bytes = 0

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _refuse(self, response: bytes) -> None:
            if self.transport.is_closing():
                return
            cycle = self.cycle
            if self._phase != "body" and (cycle is None or cycle.response_complete):
                self.transport.write(response)  # nothing else is answering this client
            self.transport.close()

        def _expired(self) -> None:
            self._deadline = None
            self._refuse(TIMEOUT_RESPONSE)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(timeout_s)  # the first request's headers

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._phase == "headers":  # this data did not complete the headers
                self._header_bytes += len(data)
                if self._header_bytes > max_header_bytes:
                    self._refuse(TOO_LARGE_RESPONSE)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._phase = "headers"
            self._header_bytes = 0
            if self._deadline is None:  # a kept-alive connection's next request
                self._arm(timeout_s)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._phase = "body"
            self._arm(timeout_s + min(1.0, timeout_s))

        def on_message_complete(self) -> None:
            self._phase = "idle"
            self._disarm()
            super().on_message_complete()

    return GuardedHttpToolsProtocol


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run`` / ``uvicorn.Config`` for the collector (tests
    use them too, so they run what production runs)."""
    return {
        "host": settings.collector_host,
        "port": settings.collector_port,
        "loop": "uvloop",
        "http": guarded_httptools(settings.request_timeout_s),
        "workers": 1,
        "access_log": False,  # an access log would hold raw client IPs
        "proxy_headers": False,  # X-Forwarded-For is read (and anonymized) by the collector itself
        "server_header": False,
        "timeout_keep_alive": 5,
        "log_level": "info",
    }
