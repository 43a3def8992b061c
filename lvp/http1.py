"""Reading HTTP/1.1 answers: the parts every keep-alive client of the project shares.

Two clients read answers off a socket themselves (profiles/dynamo_http.py, threads and plain
sockets; lvp/local/http1.py, asyncio streams): how the bytes arrive differs, what they mean does
not. This module says what they mean — the head (status, headers, whether the connection may be
kept), how the body is framed, a chunk's size — and nothing about sockets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["CHUNKED", "CLOSE_DELIMITED", "MAX_HEAD", "Head", "HttpError", "chunk_size", "parse_head"]

#: The longest answer head either client reads.
MAX_HEAD: Final = 64 * 1024
#: :attr:`Head.length` of a body framed by chunks, or ended by the connection's close.
CHUNKED: Final = -1
CLOSE_DELIMITED: Final = -2


class HttpError(OSError):
    """A malformed HTTP answer (an ``OSError``: callers retry it like a failed connection)."""


@dataclass(frozen=True, slots=True)
class Head:
    """An answer's head: ``headers`` with lower-case names; ``length`` the body's byte count, or
    :data:`CHUNKED` / :data:`CLOSE_DELIMITED`; ``keep`` whether the connection may be reused."""

    status: int
    headers: dict[str, str]
    length: int
    keep: bool

    @property
    def interim(self) -> bool:
        """A 1xx answer: the real one follows on the same connection."""
        return 100 <= self.status < 200


def parse_head(head: bytes) -> Head:
    """The head of an answer (its bytes without the final blank line); raises :class:`HttpError`."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP/1.x status line: {lines[0][:100]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(f"malformed HTTP header line: {line[:100]!r}")
        headers[name.strip().lower()] = value.strip()
    keep = parts[0] == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if status in (204, 304) or 100 <= status < 200:
        length = 0  # never a body
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        length = CHUNKED
    elif "content-length" in headers:
        text = headers["content-length"]
        if not text.isdigit():
            raise HttpError(f"bad Content-Length {text[:40]!r}")
        length = int(text)
    else:
        length, keep = CLOSE_DELIMITED, False
    return Head(status, headers, length, keep)


def chunk_size(line: bytes) -> int:
    """The size in a chunk's size line (extensions ignored); raises :class:`HttpError`."""
    text = line.split(b";", 1)[0].strip()
    try:
        return int(text, 16)
    except ValueError:
        raise HttpError(f"bad chunk size {text[:20]!r}") from None
