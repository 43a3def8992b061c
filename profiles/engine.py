"""The per-viewer engine: folds one viewer's events into its profile, whatever the delivery order.

Delivery order must not matter: events of one POST arrive reversed, Kafka redelivers, a viewer's
events come late. :class:`ViewerState` therefore keeps

* a **stable** fold — every event that can no longer be overtaken, applied in order;
* a small sorted **pending** buffer — the events whose time ``t`` is within the reorder window
  ``W`` of the newest ``t`` seen (``t`` = ``derived_ts``, capped at ``collector_ts`` — an event
  cannot have happened after the collector received it — in whole milliseconds, so that the
  fold order is exactly the order of the history's ``seq``);
* the **current** fold = stable + pending, which :meth:`ViewerState.profile` reads.

Events are folded in ``(t, event_id)`` order, lazily: :meth:`ViewerState.apply` only checks the
event and puts it in place in the pending buffer (microseconds, no fold); reading the profile,
the history changes or the state folds what is new on top of the current fold. So every late
event that arrives before the next read costs nothing extra; one that lands before events
already folded makes the engine fold the pending buffer again from a checkpoint. Stabilising
never folds an event a second time: a read that folds new events past the point where the
events that left the window end keeps a copy of the fold there as the new stable fold, and the
checkpoint (the fold left at an earlier read) becomes the stable fold once all its events are
out of the window (and when exactly the events folded before leave it, the current fold is the
new stable fold). So after a read only about a window of events is pending. Pending events are
kept as :data:`profiles.fold.Row` tuples (what the fold reads, the device class instead of the
user agent). None of this changes a result.

For the consumer: apply events as they come; per changed viewer, read
:meth:`ViewerState.profile` to publish it, then call :meth:`ViewerState.settle` (packs the viewer
into one ``marshal`` value, ~1 KB for a playing viewer, until its next event; a viewer with
history not yet drained is left as it is, since it is about to be written). To write a viewer:
:meth:`ViewerState.profile`, :meth:`ViewerState.history_changes` (write those), then
:meth:`ViewerState.dump` (the ``state`` attribute), then :meth:`ViewerState.compact` (which
settles it). The profile is built once per change until the next settle. ``compact(freeze=True)``
— for a viewer that went quiet — keeps only its compressed state (a few hundred bytes) until it
is used again. :meth:`ViewerState.load` raises :class:`UnreadableState` for a state it cannot
read (docs/state-format.md): never start such a viewer afresh over its stored profile.

Which events count (this is the contract the property tests check):

* **too late** — ``t < newest - W``: ignored. For every delivery order in which no event is more
  than ``W`` late (``newest`` seen before it minus its own ``t``), nothing is ignored and the
  final profile and history equal those of in-order delivery.
* **duplicate** — the same ``event_id`` as an applied event less than
  :data:`DUPLICATE_TOLERANCE_S` away in ``t``: a Kafka redelivery (identical) or a tracker retry
  (same event, slightly different derived time). One copy counts: the one with the smallest
  ``(t, event_id)``; the others only extend ``first_seen`` / ``last_seen`` (the collector did see
  them). Copies are found in the pending buffer plus a small ring of recently stabilised ids.

Counters, times and the state-bearing fields come from the fold itself: :mod:`profiles.fold`.

History: one :class:`HistoryEntry` per status change, in fold order. When a late event changes
the folded sequence, :meth:`ViewerState.history_changes` returns deletes for entries that no
longer exist and puts for new ones, so the stored history ends up equal to an in-order run.

Pure code: no I/O, no clock; the caller passes events (and drains history changes).
"""

from __future__ import annotations

import bisect
import marshal
import sys
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import orjson

from lvp.enriched import iso
from lvp.events import MEDIA_EVENTS as _MEDIA_NAMES
from lvp.events import ViewerEvent
from lvp.tables import history_seq
from profiles import state as sm
from profiles.device import DEVICE_CLASSES, device_class
from profiles.fold import (
    N_STATS,
    ROW_FIELDS,
    S_AD_BREAKS,
    S_AD_TIME,
    S_ADS,
    S_BUFFERING,
    S_CLICKED,
    S_PAUSED,
    S_PLAY,
    S_SKIPPED,
    ZEROS,
    Fold,
    Row,
    step,
    to_row,
)

__all__ = [
    "DUPLICATE_TOLERANCE_S",
    "MAX_PENDING",
    "STATE_VERSION",
    "STATE_VERSIONS",
    "HistoryEntry",
    "UnreadableState",
    "ViewerState",
]

#: Two events with one event id less than this far apart in time are the same event.
DUPLICATE_TOLERANCE_S: Final = 2.0
#: The pending buffer is stabilised (what the window allows) once it holds more events than this.
MAX_PENDING: Final = 64
#: Version of :meth:`ViewerState.dump`'s format (docs/state-format.md). 1: the first release;
#: 2: no user agent, only its device class.
STATE_VERSION: Final = 2
#: Every version :meth:`ViewerState.load` reads (older ones are converted on load).
STATE_VERSIONS: Final = (1, 2)


class UnreadableState(ValueError):
    """A stored state :meth:`ViewerState.load` cannot read: an unknown version (written by a newer
    release, or not by this engine at all) or a corrupt / undecodable document. Never "start
    afresh" on this: the stored profile must not be overwritten by a viewer that lost its past."""


_NEG_INF: Final = float("-inf")


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One status change of one viewer (an item of the history table, without ``ttl``)."""

    viewer_id: str
    seq: str  # lvp.tables.history_seq(round(t * 1000), event_id): time-ordered and idempotent
    at: str  # ISO time of the event (derived time)
    status: str
    prev_status: str
    event_name: str
    event_id: str

    def item(self) -> dict[str, str]:
        return {
            "viewer_id": self.viewer_id, "seq": self.seq, "at": self.at, "status": self.status,
            "prev_status": self.prev_status, "event_name": self.event_name, "event_id": self.event_id,
        }  # fmt: skip


# --- pending events ------------------------------------------------------------------------------
_NO_DATA: Final[dict[str, Any]] = {}
# A pending event: its fold.Row (t and event id first). Sorted by (t, event_id).
_Entry = Row


def _entry_key(entry: _Entry) -> tuple[float, str]:
    return (entry[0], entry[1])


def _entry_t(entry: _Entry) -> float:
    return entry[0]


_ROW_FIELDS: Final = (
    "app_id", "device", "position_s", "duration_s", "media_label", "paused", "ended",
    "playback_rate", "volume", "muted", "fullscreen", "quality", "media_session_id",
    "session_stats", "ad_id", "ad_name", "ad_break_id",
)  # fmt: skip
assert ("t", "event_id", "name", *_ROW_FIELDS, "data") == ROW_FIELDS  # rows and JSON rows agree
_I_DEVICE: Final = _ROW_FIELDS.index("device")
# Long strings that rarely change: a row writes 0 when the value equals the viewer's "base" value.
_BASE_FIELDS: Final = ("app_id", "media_label", "media_session_id")
_BASE_INDEX: Final = tuple(_ROW_FIELDS.index(f) for f in _BASE_FIELDS)
# Row positions (see _encode) of strings many events share: interned when a row is decoded.
_SHARED_ROW_FIELDS: Final = (
    "app_id", "device", "media_label", "quality", "ad_id", "ad_name", "ad_break_id",
)  # fmt: skip
_ROW_SHARED: Final = (2, *(3 + _ROW_FIELDS.index(f) for f in _SHARED_ROW_FIELDS))
_I_STATS: Final = _ROW_FIELDS.index("session_stats")


class ViewerState:
    """One viewer's engine state. See the module docstring for the ordering contract.

    Internals: ``_stable`` = fold of the stabilised events; ``_pending`` = the later events,
    sorted; ``_current`` = fold of stable + ``_pending[:_n_folded]`` (``_n_folded`` < 0: must be
    folded again); ``_checkpoint`` = the fold of stable + ``_pending[:_n_checkpointed]``, which
    becomes the stable fold as soon as all its events are out of the window (so stabilising
    costs no second fold). Folds are shared between these three until one of them must change
    (copy on write); a stable fold is never changed. Pending events are rows
    (:data:`profiles.fold.Row`). ``_profile_cache`` caches the profile until the next change or
    settle. :meth:`settle` keeps nothing but ``_packed`` (``_packed_by_settle``: a
    :mod:`marshal` pack of the current fold, the stable fold, the rows and the history
    bookkeeping) and ``_newest_t``; unpacking it leaves the stable fold packed
    (``_stable_packed``) until something needs it, and ``_packed_fold_cache`` remembers the
    packed form of a fold unchanged since it was unpacked. :meth:`compact` with ``freeze=True``
    keeps nothing but the compressed :meth:`dump` (``_packed``, not ``_packed_by_settle``) and
    ``_newest_t`` until the viewer is used again.
    """

    __slots__ = (
        "_base_values", "_checkpoint", "_current", "_event_count", "_first_seen", "_last_seen",
        "_n_checkpointed", "_n_folded", "_newest_t", "_packed", "_packed_by_settle",
        "_packed_fold_cache", "_pending", "_profile_cache", "_recent_stable_ids",
        "_seqs_never_handed_out", "_stable", "_stable_json_cache", "_stable_packed",
        "_tentative_history", "_undrained_history", "reorder_window_s", "viewer_id",
    )  # fmt: skip

    viewer_id: str
    reorder_window_s: float

    @property
    def newest_ts(self) -> float | None:
        """Time (epoch s) of the newest event applied (derived time, capped at the collector's);
        None before any. Kept by frozen states too (the consumer's quiet check reads it)."""
        return None if self._newest_t == _NEG_INF else self._newest_t

    def __init__(self, viewer_id: str, reorder_window_s: float = 10.0) -> None:
        if not reorder_window_s >= 0.0:
            raise ValueError(f"reorder window must be >= 0, got {reorder_window_s!r}")
        self.viewer_id = viewer_id
        self.reorder_window_s = float(reorder_window_s)
        self._stable: Fold | None = None  # None = nothing stabilised yet (a blank fold)
        # the stable fold's JSON, for dump()
        self._stable_json_cache: tuple[Fold, orjson.Fragment] | None = None
        self._pending: list[_Entry] = []
        self._current = Fold()
        self._n_folded = 0  # pending events folded into _current (-1: fold them all again)
        self._checkpoint: Fold | None = None
        self._n_checkpointed = 0  # pending events folded into _checkpoint
        # (t, id) of recently stabilised events (to recognise their copies)
        self._recent_stable_ids: list[tuple[float, str]] | None = None
        self._newest_t = _NEG_INF  # t of the newest event applied
        self._first_seen: float | None = None  # collector times (the profile's first_seen, last_seen)
        self._last_seen: float | None = None
        self._event_count = 0
        # history entries of pending events: seq -> (t, event_id, entry)
        self._tentative_history: dict[str, tuple[float, str, HistoryEntry]] | None = None
        # what history_changes() hands out next: puts (seq -> entry) and deletes (seq -> None)
        self._undrained_history: dict[str, HistoryEntry | None] | None = None
        # seqs put since the last drain that were never handed out (dropping them deletes nothing)
        self._seqs_never_handed_out: set[str] | None = None
        self._base_values: list[str | None] = [None] * len(_BASE_FIELDS)  # see _encode
        self._packed: bytes | None = None  # settled or frozen: the packed state, nothing else
        self._profile_cache: dict[str, Any] | None = None  # profile() since the last change (until compact)
        self._stable_packed: tuple[Any, ...] | None = None  # the stable fold, packed (unpacked when needed)
        # a fold unchanged since it was unpacked, and its packed form
        self._packed_fold_cache: tuple[Fold, tuple[Any, ...]] | None = None
        self._packed_by_settle = False  # _packed is settle()'s marshal pack, not a frozen (compressed) dump

    @classmethod
    def new(cls, viewer_id: str, reorder_window_s: float = 10.0) -> ViewerState:
        return cls(viewer_id, reorder_window_s)

    # -- applying events ---------------------------------------------------------------------------
    def apply(self, ev: ViewerEvent) -> bool:
        """Take one event in. True if anything changed; False for an ignored event (too late, a
        copy that adds nothing, a non-finite time). The fold itself runs lazily, when the profile,
        the history or the state is read. The engine keeps ``ev`` until its next :meth:`dump`:
        do not change it after handing it over."""
        t = ev.derived_ts
        c = ev.collector_ts
        if c < t:
            t = c
        if t - t != 0.0:  # NaN or infinite
            return False
        # whole milliseconds, as the history's seq: equal ms then sort by event id in both
        t = round(t * 1000.0) / 1000.0
        if t < self._newest_t - self.reorder_window_s:
            return False  # too late (or a copy of an event already stabilised)
        if self._packed is not None:
            self._thaw()
        self._profile_cache = None
        eid = ev.event_id
        pending = self._pending
        row = to_row(ev, t)
        # a copy of an event we already have?
        lo = t - DUPLICATE_TOLERANCE_S
        i = len(pending) - 1
        while i >= 0:
            entry = pending[i]
            pt = entry[0]
            if pt < lo:
                break
            if entry[1] == eid and pt - t <= DUPLICATE_TOLERANCE_S:
                if pt <= t:
                    return self._seen(c, t)
                del pending[i]  # the new copy is earlier: it takes the old one's place
                self._touch(i)
                self._count_seen(c)
                if t > self._newest_t:
                    self._newest_t = t
                self._insert(row)
                return True
            i -= 1
        recent_ids = self._recent_stable_ids
        if recent_ids is not None and (not pending or pending[0][0] >= lo):
            for rt, rid in recent_ids:
                if rid == eid and rt >= lo:
                    return self._seen(c, t)
        # a new event
        if t > self._newest_t:
            self._newest_t = t
        self._event_count += 1
        self._count_seen(c)
        if pending:
            last = pending[-1]
            if t > last[0] or (t == last[0] and eid > last[1]):
                pending.append(row)
            else:
                self._insert(row)
        else:
            pending.append(row)
        if len(pending) > MAX_PENDING:
            self._sync()
            if len(pending) > MAX_PENDING:
                self._stabilise_prefix()
        return True

    def _insert(self, entry: _Entry) -> None:
        idx = bisect.bisect_left(self._pending, (entry[0], entry[1]), key=_entry_key)
        self._pending.insert(idx, entry)
        self._touch(idx)

    def _touch(self, idx: int) -> None:
        """The pending buffer changed at ``idx``: folds that covered it are stale."""
        if idx < self._n_folded:
            self._n_folded = -1
        if idx < self._n_checkpointed:
            self._checkpoint = None
            self._n_checkpointed = 0

    def _seen(self, c: float, t: float) -> bool:
        """A copy of an applied event: it only extends first/last seen (and the newest time)."""
        if t > self._newest_t:
            self._newest_t = t
        first, last = self._first_seen, self._last_seen
        self._count_seen(c)
        return first != self._first_seen or last != self._last_seen

    def _count_seen(self, c: float) -> None:
        if c - c != 0.0:
            return
        if self._first_seen is None or c < self._first_seen:
            self._first_seen = c
        if self._last_seen is None or c > self._last_seen:
            self._last_seen = c

    # -- folding -----------------------------------------------------------------------------------
    def _sync(self) -> None:
        """Stabilise at the checkpoint if the window allows, fold what is not folded yet — taking
        a copy of the fold where the events that left the window end, which becomes the stable
        fold — and leave a checkpoint for the next time."""
        if self._packed is not None:
            self._thaw()
        pending = self._pending
        limit = self._newest_t - self.reorder_window_s
        checkpoint = self._checkpoint
        if checkpoint is not None:
            n = self._n_checkpointed
            if pending[n - 1][0] < limit:
                self._finalise(n, limit)
                del pending[:n]
                self._stable = checkpoint
                self._stable_packed = None
                self._checkpoint = None
                self._n_checkpointed = 0
                self._n_folded = self._n_folded - n if self._n_folded >= n else -1
        n_folded = self._n_folded
        if n_folded < 0:
            self._refold()
        elif n_folded < len(pending):
            current = self._current
            if current is self._stable or current is self._checkpoint:
                current = self._current = current.copy()
            elif self._packed_fold_cache is not None and self._packed_fold_cache[0] is current:
                self._packed_fold_cache = None  # (current is about to change in place)
            n = len(pending)
            # pending[:k] left the window; if that ends among the events folded now, the fold
            # there is the new stable fold (one copy instead of folding those events again later)
            k = bisect.bisect_left(pending, limit, key=_entry_t)
            snap: Fold | None = None
            if k == n_folded and n_folded > 0:
                # exactly the events folded before left the window: current is stable
                self._finalise(k, limit)
                del pending[:k]
                self._stable = current
                self._stable_packed = None
                if self._checkpoint is not None:  # (it covered fewer events: superseded)
                    self._checkpoint = None
                    self._n_checkpointed = 0
                current = self._current = current.copy()
                n_folded = 0
                n -= k
                k = 0
            for j in range(n_folded, n):
                row = pending[j]
                prev = step(current, row)
                if prev is not None:
                    self._put(row, current.status, prev)
                if j + 1 == k:
                    snap = current.copy()
            self._n_folded = n
            if snap is not None:  # (no checkpoint is left: it was at or before n_folded < k)
                self._finalise(k, limit)
                del pending[:k]
                self._stable = snap
                self._stable_packed = None
                self._n_folded = n - k
        if self._checkpoint is None and pending:
            self._checkpoint = self._current
            self._n_checkpointed = self._n_folded

    def _unpack_stable(self) -> None:
        """The stable fold is needed (not only the current one): unpack it (see :meth:`settle`)."""
        stable_packed = self._stable_packed
        if stable_packed is not None:
            self._stable_packed = None
            self._stable = Fold.unpack(stable_packed)

    def _refold(self) -> None:
        """Fold the pending events again from the checkpoint (or the stable fold); emit the
        history differences."""
        self._unpack_stable()
        pending = self._pending
        base, n0 = self._checkpoint, self._n_checkpointed
        if base is None:
            base, n0 = self._stable, 0
        current = base.copy() if base is not None else Fold()
        new: dict[str, tuple[float, str, HistoryEntry]] = {}
        for j in range(n0, len(pending)):
            row = pending[j]
            prev = step(current, row)
            if prev is not None:
                h = self._entry(row, current.status, prev)
                new[h.seq] = (row[0], row[1], h)
        self._current = current
        self._n_folded = len(pending)
        bound = (pending[n0 - 1][0], pending[n0 - 1][1]) if n0 > 0 else None
        self._diff_history(new, bound)

    def _entry(self, row: Row, status: str, prev: str) -> HistoryEntry:
        t = row[0]
        return HistoryEntry(
            viewer_id=self.viewer_id,
            seq=history_seq(round(t * 1000), row[1]),
            at=iso(t),
            status=status,
            prev_status=prev,
            event_name=row[2],
            event_id=row[1],
        )

    def _put(self, row: Row, status: str, prev: str) -> None:
        t, eid = row[0], row[1]
        h = self._entry(row, status, prev)
        tentative = self._tentative_history
        if tentative is None:
            tentative = self._tentative_history = {}
        tentative[h.seq] = (t, eid, h)
        undrained = self._undrained_history
        if undrained is None:
            undrained = self._undrained_history = {}
        if h.seq not in undrained:
            never_handed_out = self._seqs_never_handed_out
            if never_handed_out is None:
                never_handed_out = self._seqs_never_handed_out = set()
            never_handed_out.add(h.seq)
        undrained[h.seq] = h

    def _diff_history(
        self, new: dict[str, tuple[float, str, HistoryEntry]], bound: tuple[float, str] | None
    ) -> None:
        """Replace the tentative history after ``bound`` (an event key) by ``new``."""
        tentative = self._tentative_history or {}
        keep: dict[str, tuple[float, str, HistoryEntry]] = {}
        old: dict[str, HistoryEntry] = {}
        for seq, v in tentative.items():
            if bound is not None and (v[0], v[1]) <= bound:
                keep[seq] = v
            else:
                old[seq] = v[2]
        undrained = self._undrained_history if self._undrained_history is not None else {}
        never_handed_out = self._seqs_never_handed_out
        for seq in old:
            if seq not in new:
                if never_handed_out is not None and seq in never_handed_out:
                    # never handed out: nothing to delete
                    never_handed_out.discard(seq)
                    undrained.pop(seq, None)
                else:
                    undrained[seq] = None
        for seq, v in new.items():
            h = v[2]
            if old.get(seq) != h:
                if seq not in old and seq not in undrained:
                    if never_handed_out is None:
                        never_handed_out = self._seqs_never_handed_out = set()
                    never_handed_out.add(seq)
                undrained[seq] = h
        keep.update(new)
        self._tentative_history = keep or None
        self._undrained_history = undrained or None

    def _finalise(self, n: int, limit: float) -> None:
        """The first ``n`` pending events become stable: their history is final, their ids go to
        the duplicate ring."""
        pending = self._pending
        tentative = self._tentative_history
        recent_ids = self._recent_stable_ids if self._recent_stable_ids is not None else []
        keep_from = limit - DUPLICATE_TOLERANCE_S
        if tentative:
            last = pending[n - 1]
            bound = (last[0], last[1])
            for seq in [s for s, v in tentative.items() if (v[0], v[1]) <= bound]:
                del tentative[seq]
            if not tentative:
                self._tentative_history = None
        for j in range(n):
            row = pending[j]
            if row[0] >= keep_from:
                recent_ids.append((row[0], row[1]))
        # a future event has t >= newest - window: only copies >= that - tolerance can match it
        k = 0
        while k < len(recent_ids) and recent_ids[k][0] < keep_from:
            k += 1
        del recent_ids[:k]
        self._recent_stable_ids = recent_ids or None

    def _stabilise_prefix(self) -> None:
        """Stabilise every event the window allows by folding it into the stable fold (used by
        compact(), and when the buffer grows faster than checkpoints stabilise)."""
        pending = self._pending
        limit = self._newest_t - self.reorder_window_s
        k = 0
        while k < len(pending) and pending[k][0] < limit:
            k += 1
        if k == 0:
            return
        checkpoint, n_checkpointed = self._checkpoint, self._n_checkpointed
        self._unpack_stable()
        base: Fold | None = self._stable
        start = 0
        if checkpoint is not None and n_checkpointed <= k:
            base, start = checkpoint, n_checkpointed
        stable = base.copy() if base is not None else Fold()
        for j in range(start, k):
            step(stable, pending[j])
        self._finalise(k, limit)
        del pending[:k]
        self._stable = stable
        if checkpoint is not None and n_checkpointed > k:
            self._n_checkpointed = n_checkpointed - k
        else:
            self._checkpoint = None
            self._n_checkpointed = 0
        self._n_folded = self._n_folded - k if self._n_folded >= k else -1

    # -- pending rows ------------------------------------------------------------------------------
    def _encode(self, row: Row) -> orjson.Fragment:
        """A row as JSON (the stored state): long strings that equal the viewer's base values (the
        first app id / label / media session written; set once, never changed) written as 0."""
        base = self._base_values
        vals = list(row)
        for b, i in enumerate(_BASE_INDEX):
            v = vals[3 + i]
            if v:
                if base[b] is None:
                    base[b] = v
                if v == base[b]:
                    vals[3 + i] = 0
        return orjson.Fragment(orjson.dumps(vals))

    def _decode(self, r: list[Any]) -> Row:
        """A checked JSON row (see :func:`_check_row`) as a row."""
        base = self._base_values
        for b, i in enumerate(_BASE_INDEX):
            if r[3 + i] == 0 and not isinstance(r[3 + i], bool):
                r[3 + i] = base[b]
        r[0] = float(r[0])
        st = r[3 + _I_STATS]
        if st is not None:
            r[3 + _I_STATS] = tuple(st)
        for i in _ROW_SHARED:  # strings many events share: one copy in memory (as lvp.events does)
            if type(r[i]) is str:
                r[i] = sys.intern(r[i])
        if not r[-1]:
            r[-1] = _NO_DATA
        return tuple(r)

    # -- reading -----------------------------------------------------------------------------------
    def profile(self) -> dict[str, Any]:
        """The API profile (docs/contracts.md) without ``active``. Built once per change: the
        consumer reads it to publish and again to flush; each caller gets its own copy."""
        p = self._profile_cache
        if p is None:
            p = self._profile_cache = self._build_profile()
        out = dict(p)
        if out["ad"] is not None:
            out["ad"] = dict(out["ad"])
        if out["last_error"] is not None:
            out["last_error"] = dict(out["last_error"])
        return out

    def profile_view(self) -> Mapping[str, Any]:
        """:meth:`profile` without the copy, for a caller that only reads it at once (the
        consumer's publishing): the cached profile itself, valid until the next change, settle
        or compact. Never change it."""
        p = self._profile_cache
        if p is None:
            p = self._profile_cache = self._build_profile()
        return p

    def _build_profile(self) -> dict[str, Any]:
        self._sync()
        f = self._current
        totals: Sequence[float]
        if f.closed_totals is None and f.older_totals is None:
            totals = f.current_totals.vals if f.current_totals is not None else ZEROS
        else:
            sums = list(f.closed_totals) if f.closed_totals is not None else [0.0] * N_STATS
            for session in f.sessions().values():
                vals = session.vals
                for i in range(N_STATS):
                    sums[i] += vals[i]
            totals = sums
        position, duration = f.position_s, f.duration_s
        if position is not None and duration is not None and duration > 0:
            percent: float | None = round(min(100.0, max(0.0, 100.0 * position / duration)), 1)
        else:
            percent = f.percent_progress
        ad = f.ad if f.status == sm.WATCHING_AD else None
        startup = None
        if f.first_play_t is not None and f.startup_start_t is not None:
            startup = round(max(0.0, f.first_play_t - f.startup_start_t), 3)
        error = f.last_error
        return {
            "viewer_id": self.viewer_id,
            "status": f.status,
            "app_id": f.app_id or None,
            "media_label": f.media_label,
            "media_session_id": f.media_session_id,
            "position_s": position,
            "duration_s": duration,
            "percent_progress": percent,
            "ad": {"ad_id": ad[0], "name": ad[1], "break_id": ad[2]} if ad is not None else None,
            "plays": f.plays,
            "pauses": f.pauses,
            "seeks": f.seeks,
            "ad_breaks": round(totals[S_AD_BREAKS]),
            "ads_started": round(totals[S_ADS]),
            "ads_completed": f.ads_completed,
            "ads_skipped": round(totals[S_SKIPPED]),
            "ads_clicked": round(totals[S_CLICKED]),
            "buffer_events": f.buffer_events,
            "errors": f.errors,
            "play_time_s": round(totals[S_PLAY], 3),
            "paused_time_s": round(totals[S_PAUSED], 3),
            "ad_time_s": round(totals[S_AD_TIME], 3),
            "buffering_time_s": round(totals[S_BUFFERING], 3),
            "startup_time_s": startup,
            "first_seen": iso(self._first_seen) if self._first_seen is not None else None,
            "last_seen": iso(self._last_seen) if self._last_seen is not None else None,
            "last_event_id": f.last_event_id or None,
            "last_event_name": f.last_event_name or None,
            "events": self._event_count,
            "device_class": f.device_class,
            "last_error": {"code": error[0], "message": error[1]} if error is not None else None,
            "playback_rate": f.playback_rate,
            "volume": f.volume,
            "muted": f.muted,
            "fullscreen": f.fullscreen,
            "quality": f.quality,
        }

    @property
    def status(self) -> str:
        self._sync()
        return self._current.status

    @property
    def last_seen(self) -> float | None:
        """Latest collector time seen (epoch seconds), for the consumer's bookkeeping."""
        if self._packed is not None:
            self._thaw()
        return self._last_seen

    @property
    def events(self) -> int:
        if self._packed is not None:
            self._thaw()
        return self._event_count

    @property
    def pending(self) -> int:
        """Events still inside the reorder window (diagnostics)."""
        if self._packed is not None:
            self._thaw()
        return len(self._pending)

    @property
    def frozen(self) -> bool:
        """Kept compressed by ``compact(freeze=True)`` (not: packed by :meth:`settle`)."""
        return self._packed is not None and not self._packed_by_settle

    def history_changes(self) -> tuple[list[HistoryEntry], list[str]]:
        """``(entries to put, seqs to delete)`` since the previous call (then cleared)."""
        self._sync()
        undrained = self._undrained_history
        self._undrained_history = None
        self._seqs_never_handed_out = None
        if not undrained:
            return [], []
        puts = sorted((h for h in undrained.values() if h is not None), key=lambda h: h.seq)
        dels = sorted(seq for seq, h in undrained.items() if h is None)
        return puts, dels

    def settle(self) -> None:
        """Trim memory right after the profile was read for publication; results never change.

        Keeps nothing but one packed value (:mod:`marshal`: the current and the stable fold, the
        pending events as rows, the history bookkeeping) and the newest event time, until the
        viewer is used again; the next :meth:`apply` or read unpacks the current fold (and the
        stable one only if a late event or a write needs it: usually the current fold becomes the
        stable one as its events leave the window). For a playing viewer (a ping every 30 s,
        written only every few minutes) that is about 1 KB instead of 4-5 KB, for a few µs per
        event (bench/memory_bench.py). :meth:`compact` does it too. A viewer with nothing
        stabilised yet (its first seconds) is kept as it is."""
        if self._packed is not None or self._undrained_history:
            return  # (undrained history: the viewer is about to be written, then compacted)
        self._profile_cache = self._stable_json_cache = None
        self._sync()
        pending = self._pending
        if pending and pending[0][0] < self._newest_t - self.reorder_window_s:
            self._stabilise_prefix()  # events the checkpoint held back (after a burst)
        stable, stable_packed, current = self._stable, self._stable_packed, self._current
        if stable_packed is None:
            if stable is None:
                return
            cache = self._packed_fold_cache
            stable_packed = cache[1] if cache is not None and cache[0] is stable else stable.pack()
        tentative, undrained = self._tentative_history, self._undrained_history
        never_handed_out, recent_ids = self._seqs_never_handed_out, self._recent_stable_ids
        self._packed = marshal.dumps(
            (
                stable_packed,
                current.pack() if pending and current is not stable else None,
                tuple(pending),
                tuple(recent_ids) if recent_ids else None,
                tuple((v[0], v[1], *_h_json(v[2])) for v in tentative.values()) if tentative else None,
                tuple((seq, _h_json(h) if h is not None else None) for seq, h in undrained.items())
                if undrained
                else None,
                tuple(never_handed_out) if never_handed_out else None,
                tuple(self._base_values),
                self._first_seen,
                self._last_seen,
                self._event_count,
            )
        )
        self._packed_by_settle = True
        self._drop()

    def _drop(self) -> None:
        """Forget everything but ``_packed`` and ``_newest_t`` (packed or frozen)."""
        self._stable = self._checkpoint = self._recent_stable_ids = None
        self._tentative_history = self._undrained_history = self._seqs_never_handed_out = None
        self._stable_json_cache = self._profile_cache = None
        self._current = _FROZEN
        self._base_values = _NO_BASE
        self._pending = _NO_PENDING
        self._first_seen = self._last_seen = None
        self._n_folded = self._n_checkpointed = self._event_count = 0
        self._stable_packed = self._packed_fold_cache = None

    def _unpack(self, blob: bytes) -> None:
        (
            stable, current, pending, recent_ids, tentative, undrained, never_handed_out,
            base, first, last, events,
        ) = marshal.loads(blob)  # fmt: skip
        vid = self.viewer_id
        if current is None:
            self._stable = self._current = Fold.unpack(stable)
            self._packed_fold_cache = (self._stable, stable)
        else:
            self._stable_packed = stable  # unpacked when needed (_unpack_stable)
            # the current fold is a checkpoint too (never changed in place: it is likely the next
            # stable fold, whose packed form is at hand)
            self._current = self._checkpoint = Fold.unpack(current)
            self._packed_fold_cache = (self._current, current)
        self._pending = list(pending)
        self._n_folded = self._n_checkpointed = len(pending)
        self._recent_stable_ids = list(recent_ids) if recent_ids is not None else None
        if tentative is not None:
            self._tentative_history = {x[2]: (x[0], x[1], HistoryEntry(vid, *x[2:])) for x in tentative}
        if undrained is not None:
            self._undrained_history = {
                seq: (HistoryEntry(vid, *h) if h is not None else None) for seq, h in undrained
            }
        if never_handed_out is not None:
            self._seqs_never_handed_out = set(never_handed_out)
        self._base_values = list(base)
        self._first_seen = first
        self._last_seen = last
        self._event_count = events

    def compact(self, freeze: bool = False) -> None:
        """Trim memory; results never change. Without ``freeze``: :meth:`settle` (call it after
        a write, once :meth:`history_changes` was drained). With
        ``freeze`` — for viewers quiet for a while: it costs a fold of the stabilised events and
        a compression now, a decompression and :meth:`load` when the viewer returns — keep only
        the compressed state (a few hundred bytes for a typical viewer) and the newest event time
        (for :meth:`apply`'s lateness check) until the viewer is used again."""
        if self._packed is not None:
            if not (freeze and self._packed_by_settle):
                return
            self._thaw()
        if not freeze:
            self.settle()
            return
        self._profile_cache = self._stable_json_cache = None
        self._sync()
        self._stabilise_prefix()
        self._sync()
        blob = _freeze(self.dump().encode())
        self._drop()
        self._packed_by_settle = False
        self._packed = blob

    def _thaw(self) -> None:
        blob = self._packed
        if blob is None:
            return
        self._packed = None
        if self._packed_by_settle:
            self._packed_by_settle = False
            self._unpack(blob)
            return
        s = ViewerState.load(self.viewer_id, _unfreeze(blob), self.reorder_window_s)
        for name in ViewerState.__slots__:
            setattr(self, name, getattr(s, name))

    # -- persistence -------------------------------------------------------------------------------
    def dump(self) -> str:
        """Compact JSON of the full engine state (DynamoDB attribute ``state``)."""
        if self._packed is not None:
            if not self._packed_by_settle:
                return _unfreeze(self._packed).decode()
            self._thaw()
        self._sync()
        recent_ids, tentative = self._recent_stable_ids, self._tentative_history
        undrained, never_handed_out = self._undrained_history, self._seqs_never_handed_out
        doc = {
            "v": STATE_VERSION,
            "n": self._newest_t if self._newest_t != _NEG_INF else None,
            "f": self._first_seen,
            "l": self._last_seen,
            "e": self._event_count,
            "s": self._stable_json(),
            "b": self._base_values,
            "p": [self._encode(row) for row in self._pending],
            "r": [list(x) for x in recent_ids] if recent_ids else None,
            "t": [[v[0], *_h_json(v[2])] for v in tentative.values()] if tentative else None,
            "o": [[seq, _h_json(h) if h is not None else None] for seq, h in undrained.items()]
            if undrained
            else None,
            "fr": sorted(never_handed_out) if undrained and never_handed_out else None,
        }
        return orjson.dumps(doc).decode()

    def _stable_json(self) -> orjson.Fragment | None:
        self._unpack_stable()
        stable = self._stable
        if stable is None:
            return None
        cached = self._stable_json_cache
        if cached is None or cached[0] is not stable:  # folds are never changed once stable
            cached = (stable, orjson.Fragment(orjson.dumps(stable.to_json()).decode()))
            self._stable_json_cache = cached
        return cached[1]

    @classmethod
    def load(cls, viewer_id: str, state: str | bytes, reorder_window_s: float = 10.0) -> ViewerState:
        """The engine as :meth:`dump` left it, from a state of any version in
        :data:`STATE_VERSIONS` (older ones converted). Raises :class:`UnreadableState` (a
        ValueError) for an unknown version or a state it cannot decode — never returns anything
        else than what was stored.

        The pending events are folded again; should that give a different history than the one
        stored (the state machine changed since), the difference is queued in
        :meth:`history_changes`.
        """
        try:
            doc = orjson.loads(state)
            version = doc.get("v") if isinstance(doc, dict) else None
            if type(version) is not int or version not in STATE_VERSIONS:
                raise UnreadableState(
                    f"unreadable viewer state for {viewer_id!r}: unknown state version {version!r}"
                )
            if version == 1:
                doc = _from_v1(doc)
            s = cls(viewer_id, reorder_window_s)
            s._newest_t = float(doc["n"]) if doc.get("n") is not None else _NEG_INF
            s._first_seen = float(doc["f"]) if doc.get("f") is not None else None
            s._last_seen = float(doc["l"]) if doc.get("l") is not None else None
            s._event_count = int(doc.get("e") or 0)
            s._stable = Fold.from_json(doc["s"]) if doc.get("s") is not None else None
            base = doc.get("b")
            if base is not None:
                if not isinstance(base, list) or len(base) != len(_BASE_FIELDS):
                    raise ValueError("bad base values")
                s._base_values = [
                    None if v is None else sys.intern(str(v)) if f in _SHARED_ROW_FIELDS else str(v)
                    for f, v in zip(_BASE_FIELDS, base, strict=True)
                ]
            for row in doc.get("p") or []:
                _check_row(row)
                s._pending.append(s._decode(row))
            s._pending.sort(key=_entry_key)
            if doc.get("r"):
                s._recent_stable_ids = [(float(rt), str(rid)) for rt, rid in doc["r"]]
            if doc.get("t"):
                s._tentative_history = {}
                for x in doc["t"]:
                    h = _h_load(viewer_id, x[1:])
                    s._tentative_history[h.seq] = (float(x[0]), h.event_id, h)
            if doc.get("o"):
                s._undrained_history = {
                    str(seq): (_h_load(viewer_id, x) if x is not None else None) for seq, x in doc["o"]
                }
                if doc.get("fr"):
                    s._seqs_never_handed_out = {str(x) for x in doc["fr"]}
            s._n_folded = -1
            s._sync()
        except UnreadableState:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, orjson.JSONDecodeError) as exc:
            raise UnreadableState(f"unreadable viewer state for {viewer_id!r}: {exc}") from None
        return s


_I_FOLD_DEVICE: Final = Fold.__slots__.index("device_class")
_V1_BASE: Final = ("app_id", "useragent", "media_label", "media_session_id")


def _from_v1(doc: dict[str, Any]) -> dict[str, Any]:
    """A version 1 state as version 2: the user agent (in the stable fold, the base values and
    every pending row) becomes its device class. Nothing else differs."""
    fold = doc.get("s")
    if fold is not None:
        if not isinstance(fold, list) or len(fold) != len(Fold.__slots__):
            raise ValueError("fold has the wrong shape")
        ua = fold[_I_FOLD_DEVICE]
        if not isinstance(ua, str):
            raise ValueError("fold field ua is not a string")
        fold[_I_FOLD_DEVICE] = device_class(ua) if ua else "unknown"
    base = doc.get("b")
    base_ua = None
    if base is not None:
        if not isinstance(base, list) or len(base) != len(_V1_BASE):
            raise ValueError("bad base values")
        base_ua = base[1]
        doc["b"] = [base[0], base[2], base[3]]
    for row in doc.get("p") or []:
        if not isinstance(row, list) or len(row) != 4 + len(_ROW_FIELDS):
            raise ValueError("bad pending row")
        ua = row[3 + _I_DEVICE]
        if ua == 0 and not isinstance(ua, bool):  # 0: the base value
            ua = base_ua
        if ua is not None and not isinstance(ua, str):
            raise ValueError("bad pending row field useragent")
        row[3 + _I_DEVICE] = device_class(ua) if ua else None
    return doc


_NUM: Final = (int, float)
_OPT_STR: Final = (str, type(None), int)  # int: 0 = the base value
# What each column of a pending row may hold (after t, event id, name; before data).
_ROW_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "app_id": _OPT_STR, "device": (str, type(None)), "position_s": (*_NUM, type(None)),
    "duration_s": (*_NUM, type(None)), "media_label": _OPT_STR, "paused": (bool, type(None)),
    "ended": (bool, type(None)), "playback_rate": (*_NUM, type(None)), "volume": (int, type(None)),
    "muted": (bool, type(None)), "fullscreen": (bool, type(None)), "quality": (str, type(None)),
    "media_session_id": _OPT_STR, "session_stats": (list, type(None)), "ad_id": (str, type(None)),
    "ad_name": (str, type(None)), "ad_break_id": (str, type(None)),
}  # fmt: skip


def _check_row(row: Any) -> None:
    """Raise ValueError unless ``row`` is a pending row as :meth:`ViewerState._encode` writes it."""
    if not isinstance(row, list) or len(row) != 4 + len(_ROW_FIELDS):
        raise ValueError("bad pending row")
    t, eid, name, data = row[0], row[1], row[2], row[-1]
    if (
        not isinstance(t, _NUM)
        or isinstance(t, bool)
        or not isinstance(eid, str)
        or not isinstance(name, str)
    ):
        raise ValueError("bad pending row")
    if not isinstance(data, dict):
        raise ValueError("bad pending row data")
    for field, v in zip(_ROW_FIELDS, row[3:-1], strict=True):
        if not isinstance(v, _ROW_TYPES[field]) or (isinstance(v, bool) and bool not in _ROW_TYPES[field]):
            raise ValueError(f"bad pending row field {field}")
    device = row[3 + _I_DEVICE]
    if device is not None and device not in DEVICE_CLASSES:
        raise ValueError(f"unknown device class {device!r}")
    stats = row[3 + _I_STATS]
    if stats is not None and (
        len(stats) != N_STATS
        or not all(v is None or (isinstance(v, _NUM) and not isinstance(v, bool)) for v in stats)
    ):
        raise ValueError("bad pending row session totals")


_FROZEN: Final = Fold()  # stands in for the current fold while a viewer is frozen (never changed)

# Frozen states are compressed with a preset dictionary: what every dump() has in common (its
# skeleton, statuses, event names, device classes), so that a few hundred bytes of JSON compress
# as well as a long text would. Most frequent last (shortest distances). It only ever lives in
# memory: change it freely.
_ZDICT: Final = "".join(
    (
        "".join(f'"{name}",' for name in (*DEVICE_CLASSES, *_MEDIA_NAMES, *sm.STATUSES)),
        '{"v":2,"n":1,"f":1,"l":1,"e":1,"s":["watching",null,false,false,1,"","ping","","desktop"],',
        '"b":["","",""],"p":[[1,"","ping",0,"mobile",1.0,1.0,0,false,false,1.0,100,false,false,',
        '"1080p",0,[0.0,0.0,0.0,null,0.0,1.0,1.0,null],null,null,null,{}]],"r":null,',
        '"t":[[1,"00#","T00:00:00.000Z","paused","watching","pause",""]],"o":null,"fr":null}',
    )
).encode()


def _freeze(state: bytes) -> bytes:
    c = zlib.compressobj(1, zdict=_ZDICT)
    return c.compress(state) + c.flush()


def _unfreeze(blob: bytes) -> bytes:
    d = zlib.decompressobj(zdict=_ZDICT)
    return d.decompress(blob) + d.flush()


_NO_BASE: Final[list[str | None]] = [None] * len(_BASE_FIELDS)  # the same, for the base values
# ... and for the pending events: immutable, so that a path that forgot to thaw fails loudly
_NO_PENDING: Final = cast("list[_Entry]", ())


def _h_json(h: HistoryEntry) -> list[str]:
    return [h.seq, h.at, h.status, h.prev_status, h.event_name, h.event_id]


def _h_load(viewer_id: str, x: list[Any]) -> HistoryEntry:
    seq, at, status, prev, name, eid = (str(v) for v in x)
    return HistoryEntry(viewer_id, seq, at, status, prev, name, eid)
