"""The SSE broadcaster: one encoded frame per push shared by every client of a *topic* (the
clients showing the same window: see :class:`viewer.live.Subscription`), bounded per-client
queues (a client that falls behind is dropped), and per topic a ring of recent frames for
Last-Event-ID. One sequence for all topics: a push that has nothing for a topic sends it no
frame, and its clients have missed nothing.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import AsyncIterator, Hashable, Iterable, Mapping

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


class Topic:
    """The clients of one topic and its ring of recent frames. ``since``: every frame after
    this seq is still in the ring (or there was none)."""

    __slots__ = ("clients", "idle_since", "ring", "ring_size", "since")

    def __init__(self, since: int) -> None:
        self.clients: set[Client] = set()
        self.ring: deque[tuple[int, bytes]] = deque()
        self.ring_size = 0
        self.since = since
        self.idle_since: float | None = None


DEFAULT_TOPIC: Hashable = None


class Hub:
    """Topics: their clients and rings of recent frames."""

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
        self.topics: dict[Hashable, Topic] = {DEFAULT_TOPIC: Topic(self.seq)}
        self.dropped_total = 0

    @property
    def clients(self) -> set[Client]:
        """Every connected client, of every topic."""
        out: set[Client] = set()
        for topic in self.topics.values():
            out |= topic.clients
        return out

    def client_count(self) -> int:
        return sum(len(t.clients) for t in self.topics.values())

    def next_seq(self) -> int:
        return self.seq + 1

    def topic(self, name: Hashable = DEFAULT_TOPIC) -> Topic:
        """The topic ``name`` (created, complete from the current seq on, if new)."""
        topic = self.topics.get(name)
        if topic is None:
            topic = self.topics[name] = Topic(self.seq)
        return topic

    def connect(self, key: str = "", topic: Hashable = DEFAULT_TOPIC) -> Client:
        client = Client(self.client_queue_frames, key)
        t = self.topic(topic)
        t.clients.add(client)
        t.idle_since = None
        return client

    def disconnect(self, client: Client) -> None:
        for topic in self.topics.values():
            if client in topic.clients:
                topic.clients.discard(client)
                break
        client.close()

    def forget_idle(self, now: float, linger_s: float) -> list[Hashable]:
        """Drop topics without clients for ``linger_s`` (a reconnecting client within that time
        still resumes from the ring). Returns the names dropped."""
        gone: list[Hashable] = []
        for name, topic in self.topics.items():
            if topic.clients:
                topic.idle_since = None
            elif topic.idle_since is None:
                topic.idle_since = now
            elif now - topic.idle_since >= linger_s:
                gone.append(name)
        for name in gone:
            del self.topics[name]
        return gone

    def publish(self, seq: int, data: bytes, topic: Hashable = DEFAULT_TOPIC) -> int:
        """Hand the already-encoded frame ``data`` (id ``seq``) to every client of ``topic``.
        Returns how many clients were dropped because their queue was full."""
        return self.publish_many(seq, {topic: data})

    def publish_many(self, seq: int, frames: Mapping[Hashable, bytes]) -> int:
        """One push: ``frames[topic]`` to each topic's clients (topics left out get nothing)."""
        if seq <= self.seq:
            raise ValueError(f"seq {seq} is not after {self.seq}")
        self.seq = seq
        dropped_n = 0
        for name, data in frames.items():
            t = self.topic(name)
            t.ring.append((seq, data))
            t.ring_size += len(data)
            while t.ring and (len(t.ring) > self.ring_frames or t.ring_size > self.ring_bytes):
                old_seq, old = t.ring.popleft()
                t.ring_size -= len(old)
                t.since = old_seq
            dropped = [c for c in t.clients if not c.offer(data)]
            for client in dropped:
                t.clients.discard(client)
            dropped_n += len(dropped)
        self.dropped_total += dropped_n
        return dropped_n

    def frames_since(self, last_id: str | None, topic: Hashable = DEFAULT_TOPIC) -> list[bytes] | None:
        """The frames of ``topic`` after ``last_id`` if its ring still has all of them (``[]``
        when nothing was missed); None when the client needs a fresh snapshot."""
        if not last_id:
            return None
        try:
            last = int(last_id.strip())
        except ValueError:
            return None
        t = self.topics.get(topic)
        if t is None or last > self.seq or last < t.since:
            return None
        out: list[bytes] = []
        for seq, data in reversed(t.ring):
            if seq <= last:
                break
            out.append(data)
        out.reverse()
        return out

    def close_all(self) -> None:
        for topic in self.topics.values():
            for client in list(topic.clients):
                client.close()
            topic.clients.clear()
