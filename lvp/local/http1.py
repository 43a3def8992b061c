"""The simulator's HTTP client: one keep-alive HTTP/1.1 connection that POSTs a body and reads
the answer, on asyncio streams.

A load generator must cost less than what it loads. httpx spent ~40 % of `lvp simulate`'s CPU
on its own machinery (per request: an async-library probe that retries a failed import, a
connection-pool lock, the response's byte iterators), which the whole-stack bench counts
against the stack. This client does what the tracker protocol needs: ``POST`` with a
``Content-Length``; the answer is read as :mod:`lvp.http1` frames it (the reading shared with the
DynamoDB client); ``http`` and ``https``. A kept-alive connection the server closed while idle
is opened again once, transparently (as profiles/dynamo_http.py does); any other failure
closes the connection and raises (the caller retries, as a tracker does).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from lvp.http1 import CHUNKED, CLOSE_DELIMITED, MAX_HEAD, HttpError, chunk_size, parse_head

__all__ = ["Answer", "Connection", "HttpError"]


@dataclass(frozen=True, slots=True)
class Answer:
    """A response: status, headers (names lower-cased) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


class _Closed(Exception):
    """The connection closed before an answer began."""


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
        """POST ``body``; the answer, whatever its status. Raises ``OSError`` (:class:`HttpError`
        for a malformed or cut answer) or ``TimeoutError``; the connection is closed then."""
        request = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self._host_header}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nAccept: */*\r\n\r\n"
        ).encode("latin-1") + body
        try:
            return await asyncio.wait_for(self._post(request), self.timeout)
        except BaseException:
            self.close()
            raise

    async def _post(self, request: bytes) -> Answer:
        if self._writer is not None and not self._writer.is_closing():
            try:
                return await self._exchange(request)
            except (_Closed, ConnectionError):
                self.close()  # closed by the server while idle: once more on a new connection
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.ssl, limit=MAX_HEAD
        )
        try:
            return await self._exchange(request)
        except _Closed:
            raise HttpError("the connection closed before an answer") from None

    async def _exchange(self, request: bytes) -> Answer:
        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        writer.write(request)
        await writer.drain()
        while True:  # (1xx interim answers are skipped)
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise HttpError("the connection closed in an answer's head") from exc
                raise _Closed from exc
            except asyncio.LimitOverrunError as exc:
                raise HttpError("an answer's head over 64 KiB") from exc
            head = parse_head(raw[:-4])
            if not head.interim:
                break
        try:
            if head.length == CHUNKED:
                chunks: list[bytes] = []
                while size := chunk_size(await reader.readuntil(b"\r\n")):
                    chunks.append(await reader.readexactly(size))
                    await reader.readexactly(2)
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                body = b"".join(chunks)
            elif head.length == CLOSE_DELIMITED:
                body = await reader.read()
            else:
                body = await reader.readexactly(head.length)
        except asyncio.IncompleteReadError as exc:
            raise HttpError(f"a broken answer body: {exc}") from exc
        if not head.keep:
            self.close()
        return Answer(head.status, head.headers, body)

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
