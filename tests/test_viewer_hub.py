"""The broadcaster: one shared encoding, bounded queues, drop of slow clients, the resume ring."""

from __future__ import annotations

import asyncio

from viewer.hub import RETRY_FRAME, Hub, frame


def test_frame_is_one_sse_event() -> None:
    data = frame("delta", 42, {"text": "two\nlines", "n": 1})
    assert data.startswith(b"id: 42\nevent: delta\ndata: {")
    assert data.endswith(b"}\n\n") and data.count(b"\n") == 4  # JSON escapes the newline
    assert RETRY_FRAME.startswith(b"retry: ")


async def test_every_client_gets_the_same_bytes() -> None:
    hub = Hub(start_seq=100)
    clients = [hub.connect("k") for _ in range(3)]
    data = frame("delta", 101, {"x": 1})
    assert hub.publish(101, data) == 0
    for c in clients:
        got = await anext(c.frames())
        assert got is data  # the very same object: encoded once


async def test_slow_client_is_dropped_not_buffered() -> None:
    hub = Hub(client_queue_frames=3, start_seq=0)
    slow, fast = hub.connect("slow"), hub.connect("fast")
    fast_frames = fast.frames()
    received: list[bytes] = []
    dropped = 0
    for seq in range(1, 9):
        dropped += hub.publish(seq, frame("delta", seq, {"seq": seq}))
        received.append(await anext(fast_frames))  # the fast client keeps up
    assert dropped == 1 and hub.dropped_total == 1
    assert slow.dropped and slow.closed and slow.pending == 0  # its backlog is freed
    assert hub.clients == {fast}
    assert len(received) == 8
    # the dropped client's stream ends (the browser reconnects with Last-Event-ID)
    assert [f async for f in slow.frames()] == []


async def test_disconnect_ends_the_stream() -> None:
    hub = Hub(start_seq=0)
    client = hub.connect()
    frames = client.frames()
    waiter = asyncio.ensure_future(anext(frames))
    await asyncio.sleep(0)
    hub.disconnect(client)
    try:
        await asyncio.wait_for(waiter, 1)
        raise AssertionError("expected the stream to end")
    except StopAsyncIteration:
        pass
    assert client not in hub.clients


def test_resume_ring() -> None:
    hub = Hub(ring_frames=5, start_seq=1000)
    assert hub.frames_since("1000") == []  # nothing missed
    frames = {seq: frame("delta", seq, {}) for seq in range(1001, 1011)}
    for seq, data in frames.items():
        hub.publish(seq, data)
    assert hub.frames_since("1010") == []
    assert hub.frames_since("1007") == [frames[1008], frames[1009], frames[1010]]
    assert hub.frames_since("1005") == [frames[s] for s in range(1006, 1011)]
    assert hub.frames_since("1004") is None  # 1005 fell out of the ring: snapshot
    assert hub.frames_since("2000") is None  # not ours (another process)
    assert hub.frames_since("x") is None and hub.frames_since(None) is None


def test_ring_is_bounded_by_bytes() -> None:
    hub = Hub(ring_frames=100, ring_bytes=1000, start_seq=0)
    for seq in range(1, 21):
        hub.publish(seq, b"x" * 300)
    assert hub.frames_since("17") is not None  # 18, 19, 20: 900 bytes
    assert hub.frames_since("16") is None


def test_start_seq_is_random_per_process() -> None:
    assert len({Hub().seq for _ in range(5)}) == 5
