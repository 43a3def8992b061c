"""What the profiles consumer may commit, per partition of the input topic.

The commit rule (docs/lazy-writes.md): a partition is committed only up to what DynamoDB holds.
Its next offset to read is held back to the first event of any of its viewers that is not
written yet (a dirty viewer's first unwritten event, an event waiting for its viewer's stored
state): the *holds* the caller passes to :meth:`OffsetLedger.committable`.

The ledger also keeps read-position *checkpoints* per partition (``(wall time, offset)``: from
that time on, every message read had an offset at or above it), so that an erasure can find
where to read a partition again from (:meth:`OffsetLedger.replay_offset`,
docs/contracts.md#erasure).

Pure code: no Kafka client, the caller passes offsets and times.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Final

__all__ = ["CHECKPOINT_EVERY_S", "CHECKPOINT_KEEP_S", "OffsetLedger"]

#: Read-position checkpoints per partition: one per this much wall time, kept this long.
CHECKPOINT_EVERY_S: Final = 0.5
CHECKPOINT_KEEP_S: Final = 900.0


class OffsetLedger:
    """Per assigned partition: the next offset to read, the offset last committed, whether it
    is read to its end, and its read-position checkpoints."""

    __slots__ = ("assigned", "checkpoints", "committed", "eof", "next_offsets")

    def __init__(self) -> None:
        self.assigned: set[int] = set()
        #: partition -> the offset after the last message read
        self.next_offsets: dict[int, int] = {}
        #: partition -> the offset last committed
        self.committed: dict[int, int] = {}
        #: partitions read to their end (no message read since the end-of-partition event)
        self.eof: set[int] = set()
        #: partition -> (wall time, offset): from that time on, every message read has offset >= it
        self.checkpoints: dict[int, deque[tuple[float, int]]] = {}

    # --- assignment ----------------------------------------------------------------------------------
    def assign(self, p: int) -> None:
        self.assigned.add(p)
        self.eof.discard(p)

    def revoke(self, p: int) -> None:
        """Forget everything about ``p`` (revoked or lost)."""
        self.assigned.discard(p)
        self.checkpoints.pop(p, None)
        self.next_offsets.pop(p, None)
        self.committed.pop(p, None)
        self.eof.discard(p)

    # --- reading -------------------------------------------------------------------------------------
    def read(self, first: Mapping[int, int], last: Mapping[int, int], wall: float) -> None:
        """A batch was read: per partition its ``first`` and ``last`` offsets, at ``wall``."""
        nxt = self.next_offsets
        for p, off in last.items():
            nxt[p] = off + 1
        checkpoints = self.checkpoints
        for p, off in first.items():
            cps = checkpoints.get(p)
            if cps is None:
                cps = checkpoints[p] = deque()
            if not cps or wall - cps[-1][0] >= CHECKPOINT_EVERY_S:
                cps.append((wall, off))
                while len(cps) > 1 and cps[1][0] < wall - CHECKPOINT_KEEP_S:
                    cps.popleft()

    def seek(self, p: int, offset: int, wall: float) -> None:
        """``p`` is read again from ``offset`` (at ``wall``): its commits hold there until it is
        read again, and every checkpoint covers it."""
        if self.next_offsets.get(p, offset) > offset:
            self.next_offsets[p] = offset
        self.eof.discard(p)
        cps = self.checkpoints.setdefault(p, deque())
        for i, (at, off) in enumerate(cps):
            cps[i] = (at, min(off, offset))
        cps.append((wall, offset))

    def replay_offset(self, p: int, since: float) -> int | None:
        """The offset from which partition ``p`` holds every message read at or after wall time
        ``since``; None if none was read since then. (Older than the checkpoints kept: the oldest.)"""
        cps = self.checkpoints.get(p)
        if not cps or cps[-1][0] < since:
            return None
        before = [off for at, off in cps if at <= since]
        return before[-1] if before else cps[0][1]

    def oldest_checkpoint(self, p: int) -> float | None:
        cps = self.checkpoints.get(p)
        return cps[0][0] if cps else None

    # --- committing ----------------------------------------------------------------------------------
    def committable(self, *holds: Mapping[int, int]) -> dict[int, int]:
        """Next offset per assigned partition, held back to the smallest offset ``holds`` give
        for it (each: partition -> the first offset not stored yet)."""
        assigned = self.assigned
        offsets = {p: o for p, o in self.next_offsets.items() if p in assigned}
        for hold in holds:
            for p, off in hold.items():
                if p in offsets and off < offsets[p]:
                    offsets[p] = off
        return offsets

    def uncommitted(self, committable: Mapping[int, int]) -> bool:
        """Something in ``committable`` is ahead of the last commit."""
        committed = self.committed
        return any(committed.get(p, -1) < o for p, o in committable.items())

    def to_commit(self, offsets: Mapping[int, int]) -> dict[int, int]:
        """The part of ``offsets`` worth committing: assigned partitions ahead of their last commit."""
        committed, assigned = self.committed, self.assigned
        return {p: o for p, o in offsets.items() if p in assigned and o > committed.get(p, -1)}

    def mark_committed(self, offsets: Mapping[int, int]) -> None:
        self.committed.update(offsets)
