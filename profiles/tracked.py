"""The viewers a profiles consumer tracks: every per-viewer collection in one place.

A viewer is known to the consumer through several small collections, each for one concern (its
engine state, its partition, unwritten changes, what was last published, freezing, loading...).
They are kept as parallel dicts and sets rather than one object per viewer: a viewer is in most of
them only for a moment, so this is what costs the least memory per tracked viewer.

A viewer leaves the consumer in three cases: an erasure (docs/contracts.md#erasure), its partition
revoked or lost, and eviction after a long quiet. All three go through
:meth:`TrackedViewers.remove_many`, which clears every collection, so no case can leave a part of
a viewer behind. Not here: the erasure times (``profiles.erasure``), which must outlive the viewer.

Pure code: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from profiles.dirty import DirtyLedger
from profiles.engine import ViewerState

__all__ = ["HistKey", "Queued", "TrackedViewers"]

#: (viewer id, history seq)
HistKey = tuple[str, str]
#: an event waiting for its viewer's stored state: (partition, offset, event)
Queued = tuple[int, int, Any]


class TrackedViewers:
    """Per-viewer bookkeeping of the consumer (viewer id -> ...)."""

    __slots__ = (
        "changed",
        "dirty",
        "flushed",
        "loading",
        "partition",
        "pending_hist",
        "pub_sig",
        "states",
        "status_due",
        "to_load",
        "touch_pending",
        "touched",
        "touched_prev",
        "unfrozen",
        "unreadable",
        "urgent",
        "waiting",
    )

    def __init__(self, dirty: DirtyLedger) -> None:
        #: the engine state of every viewer held in memory
        self.states: dict[str, ViewerState] = {}
        #: the input partition each held viewer's events come from
        self.partition: dict[str, int] = {}
        #: viewers with changes not stored yet: the (partition, offset) of each one's first
        #: unstored event (commits of its partition stop there) and when it became dirty
        self.dirty = dirty
        #: viewers whose write is due at the next flush (status writes come due, failed writes)
        self.urgent: set[str] = set()
        #: new viewers and status changes waiting out LVP_STATUS_WRITE_DELAY_S -> when their write
        #: is due (monotonic s). One delay for all: insertion order is due order.
        self.status_due: dict[str, float] = {}
        #: history changes taken from the states, not written yet ((viewer, seq) -> entry or None)
        self.pending_hist: dict[HistKey, Any] = {}
        #: viewers changed since the last publication
        self.changed: set[str] = set()
        #: per viewer, what was last published of it (``profiles.consumer._pub_key``)
        self.pub_sig: dict[str, int] = {}
        #: viewers whose changes since then are touch fields only -> their touches row
        self.touch_pending: dict[str, list[Any]] = {}
        #: viewers with events in this eviction period and in the previous one
        self.touched: set[str] = set()
        self.touched_prev: set[str] = set()
        #: viewers flushed since they were last frozen / since the last freeze pass
        self.unfrozen: set[str] = set()
        self.flushed: set[str] = set()
        #: viewers seen for the first time: their events (arrival order) wait for the stored state
        self.loading: dict[str, list[Queued]] = {}
        #: viewers whose stored state is to be loaded (not in a load yet)
        self.to_load: set[str] = set()
        #: events in ``loading``
        self.waiting = 0
        #: viewers whose stored state this version cannot read -> their partition (stopped)
        self.unreadable: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.states)

    def held(self, vid: str) -> bool:
        """``vid`` has a state here or events waiting for one."""
        return vid in self.states or vid in self.loading

    def partition_of(self, vid: str) -> int | None:
        """The partition of a held viewer (or of its first waiting event)."""
        p = self.partition.get(vid)
        if p is None:
            queue = self.loading.get(vid)
            if queue:
                return queue[0][0]
        return p

    def in_partitions(self, parts: Collection[int]) -> list[str]:
        """The viewers of partitions ``parts``: held, or with events waiting for their state."""
        out = [v for v, waiting in self.loading.items() if waiting[0][0] in parts]
        out += [v for v, p in self.partition.items() if p in parts]
        return out

    def mark_dirty(self, vid: str, p: int, off: int, now: float, urgent: bool = False) -> None:
        """``vid`` has changes not in DynamoDB from offset ``off`` of partition ``p`` on."""
        self.dirty.mark(vid, p, off, now)
        if urgent:
            self.urgent.add(vid)

    def status_changed(self, vid: str, due: float | None) -> None:
        """``vid`` (dirty) is new or changed status: its write is urgent now (``due`` None) or at
        ``due``, unless one is already pending (the earlier due time stands)."""
        if due is None:
            self.urgent.add(vid)
        elif vid not in self.status_due and vid not in self.urgent:
            self.status_due[vid] = due

    def ripe_status_writes(self, now: float) -> int:
        """Make the status writes due by ``now`` urgent; returns how many."""
        due = self.status_due
        if not due:
            return 0
        ripe: list[str] = []
        for vid, t in due.items():
            if t > now:
                break
            ripe.append(vid)
        for vid in ripe:
            del due[vid]
        self.urgent.update(ripe)
        return len(ripe)

    def written(self, vids: set[str]) -> None:
        """``vids`` are taken for a write: nothing of theirs is urgent or waiting any more."""
        self.urgent -= vids
        if self.status_due:
            due = self.status_due
            for vid in vids:
                due.pop(vid, None)

    def waiting_holds(self) -> dict[int, int]:
        """Per partition, the first offset of an event waiting for its viewer's state."""
        out: dict[int, int] = {}
        for queue in self.loading.values():
            p, off, _ev = queue[0]
            cur = out.get(p)
            if cur is None or off < cur:
                out[p] = off
        return out

    def unreadable_waiting(self) -> int:
        """Events waiting for viewers whose stored state cannot be read."""
        if not self.unreadable:
            return 0
        return sum(len(self.loading.get(v, ())) for v in self.unreadable)

    def stopped_partitions(self) -> set[int]:
        return set(self.unreadable.values())

    # --- the one way out --------------------------------------------------------------------------
    def remove(self, vid: str) -> None:
        self.remove_many((vid,))

    def remove_many(self, vids: Iterable[str]) -> int:
        """Drop everything held about ``vids``: state, partition, unwritten changes and history,
        publication and freezing bookkeeping, queued events. Returns how many had a state."""
        gone = set(vids)
        if not gone:
            return 0
        n = 0
        states, partition, dirty, pub_sig = self.states, self.partition, self.dirty, self.pub_sig
        touch_pending, loading, unreadable = self.touch_pending, self.loading, self.unreadable
        for vid in gone:
            if states.pop(vid, None) is not None:
                n += 1
            partition.pop(vid, None)
            dirty.pop(vid)
            pub_sig.pop(vid, None)
            touch_pending.pop(vid, None)
            queued = loading.pop(vid, None)
            if queued:
                self.waiting -= len(queued)
            unreadable.pop(vid, None)
            self.status_due.pop(vid, None)
        for s in (self.changed, self.urgent, self.to_load, self.touched, self.touched_prev, self.unfrozen,
                  self.flushed):  # fmt: skip
            if s:
                s -= gone
        if self.pending_hist:
            self.pending_hist = {k: v for k, v in self.pending_hist.items() if k[0] not in gone}
        return n
