"""Which viewers have changes DynamoDB does not hold yet, from which offset, and when each is due.

The consumer's commit rule rests on this ledger: a partition may be committed only up to the first
unwritten event of any of its viewers (:meth:`DirtyLedger.earliest`). With lazy writes
(docs/lazy-writes.md) a playing viewer stays here for minutes, so the ledger is built to be small:
per viewer one integer packs the partition, the first unwritten offset and the tick it became
dirty (instead of tuples and floats in several dicts), and a timing wheel of one-tick buckets of
viewer ids says when to look at each viewer again (instead of a heap of tuples). A tick is a
second (a tenth of the shorter interval when that is below 10 s: tests and benches).

A viewer is due when it has been dirty for ``write_interval_s`` (the cadence) or, earlier, when
``is_quiet(viewer, partition)`` says it has had no event for a while (the caller decides, from the
event clock). With ``spread`` each dirty period's cadence comes up to that share of the interval
earlier, by a pseudo-random amount per viewer and period: an audience that joined together (a
match kicking off) would otherwise be written all at once, every interval, for as long as it
watches. Pure code: the caller passes the time; no I/O.

The consumer asks for :meth:`DirtyLedger.earliest` at every flush (each second), so it must not
walk every dirty viewer (at 100,000 playing viewers that walk took tens of milliseconds each
time): each partition keeps a heap of its viewers' packed entries, stale ones (the viewer
written since, or its offset lowered) dropped as they come to the top. A viewer enters a heap
when it becomes dirty (or its first offset is lowered), once per dirty period: ~64 B while it is
dirty.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterator
from typing import Final

__all__ = ["DirtyLedger"]

_P_BITS: Final = 16  # partitions 0..65534 (65535: unknown)
_T_BITS: Final = 32  # ticks since the ledger started
_P_MASK: Final = (1 << _P_BITS) - 1
_T_MASK: Final = (1 << _T_BITS) - 1
_OFF_SHIFT: Final = _P_BITS + _T_BITS


def _pack(p: int, off: int, t: int) -> int:
    # offsets are stored + 1 (-1, "hold the whole partition back", becomes 0)
    return ((off + 1) << _OFF_SHIFT) | ((t & _T_MASK) << _P_BITS) | (p & _P_MASK)


def _unpack(x: int) -> tuple[int, int, int]:
    p = x & _P_MASK
    return (-1 if p == _P_MASK else p), (x >> _OFF_SHIFT) - 1, (x >> _P_BITS) & _T_MASK


class DirtyLedger:
    """Dirty viewers: ``vid -> (partition, first unwritten offset, dirty since)``.

    ``mark`` records an applied event; ``pop`` takes a viewer out when its write is submitted;
    ``due`` returns the viewers to write now (cadence or quiet) and reschedules the others."""

    __slots__ = (
        "_entries", "_firsts", "_next_bucket", "_start", "_tick", "_wheel", "quiet_s", "spread",
        "write_interval_s",
    )  # fmt: skip

    def __init__(self, write_interval_s: float, quiet_s: float, start: float, spread: float = 0.0) -> None:
        if not 0.0 <= spread < 1.0:
            raise ValueError(f"spread must be in [0, 1), got {spread}")
        self.write_interval_s = write_interval_s
        self.quiet_s = quiet_s
        self.spread = spread
        self._start = start
        # the wheel's slot: one second, finer when the intervals are shorter (tests, benches)
        self._tick = min(1.0, max(0.01, min(write_interval_s, quiet_s) / 10))
        self._entries: dict[str, int] = {}
        #: per partition, a heap of (packed entry, viewer): the packing orders by offset first
        self._firsts: dict[int, list[tuple[int, str]]] = {}
        self._wheel: dict[int, list[str]] = {}
        self._next_bucket = 0

    # --- the set of dirty viewers -----------------------------------------------------------------
    def __contains__(self, vid: object) -> bool:
        return vid in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def _second(self, now: float) -> int:
        """``now`` in ticks since the start."""
        return int((now - self._start) / self._tick)

    def _schedule(self, vid: str, at_second: int) -> None:
        bucket = max(at_second, self._next_bucket)
        slot = self._wheel.get(bucket)
        if slot is None:
            self._wheel[bucket] = [vid]
        else:
            slot.append(vid)

    def mark(self, vid: str, p: int, off: int, now: float) -> bool:
        """Event at ``(p, off)`` applied to ``vid``. True if ``vid`` was clean (it is dirty from
        now on); a dirty viewer keeps its first offset unless this one is earlier."""
        x = self._entries.get(vid)
        if x is None:
            t = self._second(now)
            self._entries[vid] = x = _pack(p, off, t)
            self._first(p, x, vid)
            self._schedule(vid, t + 1)  # the next tick: due() then knows when it will be quiet
            return True
        p0, off0, t0 = _unpack(x)
        if (p, off) < (p0, off0):
            self._entries[vid] = x = _pack(p, off, t0)
            self._first(p, x, vid)
        return False

    def _first(self, p: int, x: int, vid: str) -> None:
        heap = self._firsts.get(p)
        if heap is None:
            self._firsts[p] = [(x, vid)]
        else:
            heapq.heappush(heap, (x, vid))

    def first(self, vid: str) -> tuple[int, int] | None:
        """``(partition, offset)`` of the viewer's first unwritten event, or None if clean."""
        x = self._entries.get(vid)
        if x is None:
            return None
        p, off, _t = _unpack(x)
        return p, off

    def pop(self, vid: str) -> tuple[int, int] | None:
        """Take ``vid`` out (its write was submitted); its first unwritten ``(p, offset)``."""
        x = self._entries.pop(vid, None)
        if x is None:
            return None
        p, off, _t = _unpack(x)
        return p, off

    def earliest(self) -> dict[int, int]:
        """Per partition, the smallest first-unwritten offset of its dirty viewers."""
        out: dict[int, int] = {}
        entries, firsts = self._entries, self._firsts
        for p, heap in list(firsts.items()):
            while heap:
                x, vid = heap[0]
                if entries.get(vid) == x:  # (else written since, or its offset lowered: stale)
                    out[p] = (x >> _OFF_SHIFT) - 1
                    break
                heapq.heappop(heap)
            else:
                del firsts[p]
        return out

    # --- what is due -------------------------------------------------------------------------------
    def cadence_after(self, vid: str, tick: int) -> float:
        """Seconds after ``vid`` became dirty (at ``tick``) that its cadence write is due: the
        interval, less up to ``spread`` of it (the same for one viewer and dirty period)."""
        if not self.spread:
            return self.write_interval_s
        phase = ((hash(vid) ^ (tick * 0x9E3779B1)) & 0xFFFF) / 0x10000  # in [0, 1)
        return self.write_interval_s * (1.0 - self.spread * phase)

    def due(self, now: float, is_quiet: Callable[[str, int], float]) -> dict[str, str]:
        """The viewers to write now, with why: ``"cadence"`` (dirty for ``write_interval_s``) or
        ``"quiet"``. ``is_quiet(vid, partition)`` returns how many seconds are left until the
        viewer counts as quiet (<= 0: quiet now). The others are looked at again later."""
        out: dict[str, str] = {}
        now_s = self._second(now)
        entries, wheel = self._entries, self._wheel
        tick = self._tick
        while self._next_bucket <= now_s:
            slot = wheel.pop(self._next_bucket, None)
            self._next_bucket += 1
            if not slot:
                continue
            for vid in slot:
                x = entries.get(vid)
                if x is None or vid in out:
                    continue  # written since, or already found due
                p, _off, t = _unpack(x)
                cadence = t * tick + self.cadence_after(vid, t)  # (seconds since the start)
                elapsed = now - self._start
                if cadence <= elapsed:
                    out[vid] = "cadence"
                    continue
                left = is_quiet(vid, p)
                if left <= 0:
                    out[vid] = "quiet"
                    continue
                self._schedule(vid, max(now_s + 1, math.ceil(min(cadence, elapsed + left) / tick)))
        return out
