"""The simulator's HTTP client: one keep-alive HTTP/1.1 connection that POSTs a body and reads
the answer.

A load generator must cost less than what it loads. httpx spent ~40 % of `lvp simulate`'s CPU
on its own machinery (per request: an async-library probe that retries a failed import, a
connection-pool lock, the response's byte iterators), which the whole-stack bench counts
against the stack. This client does what the tracker protocol needs and nothing else: ``POST``
with a ``Content-Length``, an answer with a ``Content-Length``, chunked, or until the server
closes; ``http`` and ``https``. Any failure closes the connection and raises (the caller
retries, as a tracker does); the next request opens a new one.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Answer", "Connection", "HttpError"]

_MAX_HEAD = 64 * 1024


class HttpError(Exception):
    """The server's answer was not HTTP/1.x, or the connection ended in the middle of it."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A response: status, headers (names lower-cased) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive connection to ``url`` (opened on the first request, again after a failure
    or a ``Connection: close``). Not for concurrent use: one request at a time."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = timeout
        host = self.host if ":" not in self.host else f"[{self.host}]"
        default_port = self.port == (443 if self.ssl else 80)
        self._host_header = host if default_port else f"{host}:{self.port}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes, content_type: str = "application/json; charset=UTF-8") -> Answer:
        """POST ``body``; the answer, whatever its status. Raises ``OSError``, ``TimeoutError``
        or :class:`HttpError` (the connection is closed then)."""
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self._host_header}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nAccept: */*\r\n\r\n"
        ).encode("latin-1")
        try:
            return await asyncio.wait_for(self._exchange(head + body), self.timeout)
        except BaseException:
            self.close()
            raise

    async def _exchange(self, request: bytes) -> Answer:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.ssl, limit=_MAX_HEAD
            )
        reader, writer = self._reader, self._writer
        assert reader is not None
        writer.write(request)
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise HttpError("the connection closed before an answer") from exc
        except asyncio.LimitOverrunError as exc:
            raise HttpError("an answer's head over 64 KiB") from exc
        status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise HttpError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
        headers: dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        status = int(code)
        body = await self._body(reader, headers, status)
        if headers.get("connection", "").lower() == "close" or version == "HTTP/1.0":
            self.close()
        return Answer(status, headers, body)

    async def _body(self, reader: asyncio.StreamReader, headers: dict[str, str], status: int) -> bytes:
        if status in (204, 304) or 100 <= status < 200:
            return b""
        try:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                chunks: list[bytes] = []
                while True:
                    size_line = await reader.readuntil(b"\r\n")
                    size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
                    if size == 0:
                        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                            pass
                        return b"".join(chunks)
                    chunks.append(await reader.readexactly(size))
                    await reader.readexactly(2)
            length = headers.get("content-length")
            if length is not None:
                return await reader.readexactly(int(length))
        except (asyncio.IncompleteReadError, ValueError) as exc:
            raise HttpError(f"a broken answer body: {exc}") from exc
        body = await reader.read()  # no length: the body ends with the connection
        self.close()
        return body

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
