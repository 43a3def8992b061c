"""The SSE broadcaster: one encoded frame per push shared by every client, bounded per-client
queues (a client that falls behind is dropped), and a ring of recent frames for Last-Event-ID.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import AsyncIterator, Iterable

import orjson

RETRY_MS = 2000
RETRY_FRAME = b"retry: %d\n\n" % RETRY_MS


def frame(event: str, seq: int, payload: object) -> bytes:
    """One SSE frame; orjson never emits raw newlines, so the JSON fits one ``data:`` line."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, event.encode(), orjson.dumps(payload))


class Client:
    """One connected stream: a bounded queue of frames the response drains."""

    __slots__ = ("_frames", "_wake", "closed", "dropped", "key", "max_frames")

    def __init__(self, max_frames: int, key: str = "") -> None:
        self._frames: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self.max_frames = max_frames
        self.closed = False
        self.dropped = False
        self.key = key

    def offer(self, data: bytes) -> bool:
        """Queue ``data``; False (and the client is closed as dropped) when the queue is full."""
        if self.closed:
            return False
        if len(self._frames) >= self.max_frames:
            self.dropped = True
            self.close()
            return False
        self._frames.append(data)
        self._wake.set()
        return True

    def close(self) -> None:
        self.closed = True
        self._frames.clear()
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._frames)

    async def frames(self, first: Iterable[bytes] = ()) -> AsyncIterator[bytes]:
        for data in first:
            yield data
        while True:
            while self._frames:
                yield self._frames.popleft()
            if self.closed:
                return
            self._wake.clear()
            await self._wake.wait()


class Hub:
    """Clients and the ring of recent delta frames."""

    def __init__(
        self,
        *,
        client_queue_frames: int = 64,
        ring_frames: int = 1024,
        ring_bytes: int = 32 * 1024 * 1024,
        start_seq: int | None = None,
    ) -> None:
        self.client_queue_frames = client_queue_frames
        self.ring_frames = ring_frames
        self.ring_bytes = ring_bytes
        # Random start: an id from another process (or before a restart) is never ours.
        self.seq = secrets.randbelow(2**50) if start_seq is None else start_seq
        self._ring: deque[tuple[int, bytes]] = deque()
        self._ring_size = 0
        self.clients: set[Client] = set()
        self.dropped_total = 0

    def next_seq(self) -> int:
        return self.seq + 1

    def connect(self, key: str = "") -> Client:
        client = Client(self.client_queue_frames, key)
        self.clients.add(client)
        return client

    def disconnect(self, client: Client) -> None:
        self.clients.discard(client)
        client.close()

    def publish(self, seq: int, data: bytes) -> int:
        """Hand the already-encoded frame ``data`` (id ``seq``) to every client. Returns how
        many clients were dropped because their queue was full."""
        if seq <= self.seq:
            raise ValueError(f"seq {seq} is not after {self.seq}")
        self.seq = seq
        self._ring.append((seq, data))
        self._ring_size += len(data)
        while self._ring and (len(self._ring) > self.ring_frames or self._ring_size > self.ring_bytes):
            self._ring_size -= len(self._ring.popleft()[1])
        dropped = [c for c in self.clients if not c.offer(data)]
        for client in dropped:
            self.clients.discard(client)
        self.dropped_total += len(dropped)
        return len(dropped)

    def frames_since(self, last_id: str | None) -> list[bytes] | None:
        """The frames after ``last_id`` if the ring still has all of them (``[]`` when nothing
        was missed); None when the client needs a fresh snapshot."""
        if not last_id:
            return None
        try:
            last = int(last_id.strip())
        except ValueError:
            return None
        if last == self.seq:
            return []
        if last > self.seq or not self._ring or self._ring[0][0] > last + 1:
            return None
        out: list[bytes] = []
        for seq, data in reversed(self._ring):
            if seq <= last:
                break
            out.append(data)
        out.reverse()
        return out

    def close_all(self) -> None:
        for client in list(self.clients):
            self.disconnect(client)
