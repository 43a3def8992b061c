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
out of the window. So after a read only about a window of events is pending. None of this
changes a result.

For the consumer: apply events as they come; per flush, per changed viewer, read
:meth:`ViewerState.profile`, :meth:`ViewerState.history_changes` (write those), then
:meth:`ViewerState.dump` (the ``state`` attribute). The profile is built once per change (the
consumer reads it to publish and again to flush). :meth:`ViewerState.compact` trims a viewer
after a flush; ``compact(freeze=True)`` — for a viewer that went quiet — keeps only its
compressed state (a few hundred bytes) until it is used again.

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
import operator
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import orjson

from bench.baseline.fold import (
    DATA_KEYS,
    N_STATS,
    S_AD_BREAKS,
    S_AD_TIME,
    S_ADS,
    S_BUFFERING,
    S_CLICKED,
    S_PAUSED,
    S_PLAY,
    S_SKIPPED,
    STAT_KEYS,
    ZEROS,
    Fold,
    step,
)
from lvp.enriched import iso
from lvp.events import MEDIA_EVENTS as _MEDIA_NAMES
from lvp.events import ViewerEvent
from lvp.tables import history_seq
from profiles import state as sm
from profiles.device import device_class

__all__ = [
    "DUPLICATE_TOLERANCE_S",
    "MAX_PENDING",
    "STATE_VERSION",
    "HistoryEntry",
    "ViewerState",
]

#: Two events with one event id less than this far apart in time are the same event.
DUPLICATE_TOLERANCE_S: Final = 2.0
#: The pending buffer is stabilised (what the window allows) once it holds more events than this.
MAX_PENDING: Final = 64
#: Version of :meth:`ViewerState.dump`'s format.
STATE_VERSION: Final = 1

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
# A pending event: (t, event_id, the event or its encoded row). Sorted by (t, event_id).
_Entry = tuple[float, str, "ViewerEvent | str"]


def _entry_key(entry: _Entry) -> tuple[float, str]:
    return (entry[0], entry[1])


def _entry_t(entry: _Entry) -> float:
    return entry[0]


def _slim_data(name: str, data: dict[str, Any]) -> dict[str, Any]:
    keys = DATA_KEYS.get(name)
    if not keys or not data:
        return _NO_DATA
    out = {k: data[k] for k in keys if k in data}
    return out or _NO_DATA


_ROW_FIELDS: Final = (
    "app_id", "useragent", "position_s", "duration_s", "media_label", "paused", "ended",
    "playback_rate", "volume", "muted", "fullscreen", "quality", "media_session_id",
    "session_stats", "ad_id", "ad_name", "ad_break_id",
)  # fmt: skip
_ROW_GET: Final = operator.attrgetter(*_ROW_FIELDS)
# Long strings that rarely change: a row writes 0 when the value equals the viewer's "base" value.
_BASE_FIELDS: Final = ("app_id", "useragent", "media_label", "media_session_id")
_BASE_INDEX: Final = tuple(_ROW_FIELDS.index(f) for f in _BASE_FIELDS)
# Row positions (see _encode) of strings many events share: interned when a row is decoded.
_SHARED_ROW_FIELDS: Final = (
    "app_id", "useragent", "media_label", "quality", "ad_id", "ad_name", "ad_break_id",
)  # fmt: skip
_ROW_SHARED: Final = (2, *(3 + _ROW_FIELDS.index(f) for f in _SHARED_ROW_FIELDS))
_I_STATS: Final = _ROW_FIELDS.index("session_stats")


class ViewerState:
    """One viewer's engine state. See the module docstring for the ordering contract.

    Internals: ``_stable`` = fold of the stabilised events; ``_pending`` = the later events,
    sorted; ``_cur`` = fold of stable + ``_pending[:_m]`` (``_m`` < 0: must be folded again);
    ``_ck`` = a checkpoint, the fold of stable + ``_pending[:_ck_n]``, which becomes the stable
    fold as soon as all its events are out of the window (so stabilising costs no second fold).
    Folds are shared between these three until one of them must change (copy on write). Once
    folded and written by :meth:`dump`, a pending event is kept as its compact JSON row (decoded
    again only if a late event makes the engine fold it again). ``_prof`` caches the profile
    until the next change. :meth:`compact` with ``freeze=True`` keeps nothing but the compressed
    :meth:`dump` (``_blob``) and ``_newest`` until the viewer is used again.
    """

    __slots__ = (
        "_base", "_blob", "_ck", "_ck_n", "_cur", "_events", "_first", "_fresh", "_last", "_m",
        "_newest", "_out", "_pending", "_prof", "_ring", "_sjson", "_stable", "_tent", "viewer_id",
        "window",
    )  # fmt: skip

    viewer_id: str
    window: float

    def __init__(self, viewer_id: str, reorder_window_s: float = 10.0) -> None:
        if not reorder_window_s >= 0.0:
            raise ValueError(f"reorder window must be >= 0, got {reorder_window_s!r}")
        self.viewer_id = viewer_id
        self.window = float(reorder_window_s)
        self._stable: Fold | None = None  # None = nothing stabilised yet (a blank fold)
        self._sjson: tuple[Fold, orjson.Fragment] | None = None  # the stable fold's JSON, for dump()
        self._pending: list[_Entry] = []
        self._cur = Fold()
        self._m = 0
        self._ck: Fold | None = None
        self._ck_n = 0
        self._ring: list[tuple[float, str]] | None = None  # (t, id) of recently stabilised events
        self._newest = _NEG_INF
        self._first: float | None = None
        self._last: float | None = None
        self._events = 0
        # history entries of pending events: seq -> (t, event_id, entry)
        self._tent: dict[str, tuple[float, str, HistoryEntry]] | None = None
        self._out: dict[str, HistoryEntry | None] | None = None  # undrained puts (entry) / deletes (None)
        self._fresh: set[str] | None = None  # seqs put since the last drain that were never handed out
        self._base: list[str | None] = [None] * len(_BASE_FIELDS)  # see _encode
        self._blob: bytes | None = None  # frozen: the compressed dump, nothing else
        self._prof: dict[str, Any] | None = None  # profile() since the last change (until compact)

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
        if t < self._newest - self.window:
            return False  # too late (or a copy of an event already stabilised)
        if self._blob is not None:
            self._thaw()
        self._prof = None
        eid = ev.event_id
        pending = self._pending
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
                if t > self._newest:
                    self._newest = t
                self._insert((t, eid, ev))
                return True
            i -= 1
        ring = self._ring
        if ring is not None and (not pending or pending[0][0] >= lo):
            for rt, rid in ring:
                if rid == eid and rt >= lo:
                    return self._seen(c, t)
        # a new event
        if t > self._newest:
            self._newest = t
        self._events += 1
        self._count_seen(c)
        if pending:
            last = pending[-1]
            if t > last[0] or (t == last[0] and eid > last[1]):
                pending.append((t, eid, ev))
            else:
                self._insert((t, eid, ev))
        else:
            pending.append((t, eid, ev))
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
        if idx < self._m:
            self._m = -1
        if idx < self._ck_n:
            self._ck = None
            self._ck_n = 0

    def _seen(self, c: float, t: float) -> bool:
        """A copy of an applied event: it only extends first/last seen (and the newest time)."""
        if t > self._newest:
            self._newest = t
        first, last = self._first, self._last
        self._count_seen(c)
        return first != self._first or last != self._last

    def _count_seen(self, c: float) -> None:
        if c - c != 0.0:
            return
        if self._first is None or c < self._first:
            self._first = c
        if self._last is None or c > self._last:
            self._last = c

    # -- folding -----------------------------------------------------------------------------------
    def _event(self, j: int) -> ViewerEvent:
        p = self._pending[j][2]
        return self._decode(p) if type(p) is str else p  # type: ignore[return-value]

    def _sync(self) -> None:
        """Stabilise at the checkpoint if the window allows, fold what is not folded yet — taking
        a copy of the fold where the events that left the window end, which becomes the stable
        fold — and leave a checkpoint for the next time."""
        if self._blob is not None:
            self._thaw()
        pending = self._pending
        limit = self._newest - self.window
        ck = self._ck
        if ck is not None:
            n = self._ck_n
            if pending[n - 1][0] < limit:
                self._finalise(n, limit)
                del pending[:n]
                self._stable = ck
                self._ck = None
                self._ck_n = 0
                self._m = self._m - n if self._m >= n else -1
        m = self._m
        if m < 0:
            self._refold()
        elif m < len(pending):
            cur = self._cur
            if cur is self._stable or cur is self._ck:
                cur = self._cur = cur.copy()
            n = len(pending)
            # pending[:k] left the window; if that ends among the events folded now, the fold
            # there is the new stable fold (one copy instead of folding those events again later)
            k = bisect.bisect_left(pending, limit, key=_entry_t)
            snap: Fold | None = None
            for j in range(m, n):
                t, eid, p = pending[j]
                ev = self._decode(p) if type(p) is str else p
                prev = step(cur, ev, t)  # type: ignore[arg-type]
                if prev is not None:
                    self._put(t, eid, ev, cur.status, prev)  # type: ignore[arg-type]
                if j + 1 == k:
                    snap = cur.copy()
            self._m = n
            if snap is not None:  # (no checkpoint is left: it was at or before m < k)
                self._finalise(k, limit)
                del pending[:k]
                self._stable = snap
                self._m = n - k
        if self._ck is None and pending:
            self._ck = self._cur
            self._ck_n = self._m

    def _refold(self) -> None:
        """Fold the pending events again from the checkpoint (or the stable fold); emit the
        history differences."""
        pending = self._pending
        base, n0 = self._ck, self._ck_n
        if base is None:
            base, n0 = self._stable, 0
        cur = base.copy() if base is not None else Fold()
        new: dict[str, tuple[float, str, HistoryEntry]] = {}
        for j in range(n0, len(pending)):
            t, eid, _p = pending[j]
            ev = self._event(j)
            prev = step(cur, ev, t)
            if prev is not None:
                h = self._entry(t, ev, cur.status, prev)
                new[h.seq] = (t, eid, h)
        self._cur = cur
        self._m = len(pending)
        bound = (pending[n0 - 1][0], pending[n0 - 1][1]) if n0 > 0 else None
        self._diff_history(new, bound)

    def _entry(self, t: float, ev: ViewerEvent, status: str, prev: str) -> HistoryEntry:
        return HistoryEntry(
            viewer_id=self.viewer_id,
            seq=history_seq(round(t * 1000), ev.event_id),
            at=iso(t),
            status=status,
            prev_status=prev,
            event_name=ev.name,
            event_id=ev.event_id,
        )

    def _put(self, t: float, eid: str, ev: ViewerEvent, status: str, prev: str) -> None:
        h = self._entry(t, ev, status, prev)
        tent = self._tent
        if tent is None:
            tent = self._tent = {}
        tent[h.seq] = (t, eid, h)
        out = self._out
        if out is None:
            out = self._out = {}
        if h.seq not in out:
            fresh = self._fresh
            if fresh is None:
                fresh = self._fresh = set()
            fresh.add(h.seq)
        out[h.seq] = h

    def _diff_history(
        self, new: dict[str, tuple[float, str, HistoryEntry]], bound: tuple[float, str] | None
    ) -> None:
        """Replace the tentative history after ``bound`` (an event key) by ``new``."""
        tent = self._tent or {}
        keep: dict[str, tuple[float, str, HistoryEntry]] = {}
        old: dict[str, HistoryEntry] = {}
        for seq, v in tent.items():
            if bound is not None and (v[0], v[1]) <= bound:
                keep[seq] = v
            else:
                old[seq] = v[2]
        out = self._out if self._out is not None else {}
        fresh = self._fresh
        for seq in old:
            if seq not in new:
                if fresh is not None and seq in fresh:  # never handed out: nothing to delete
                    fresh.discard(seq)
                    out.pop(seq, None)
                else:
                    out[seq] = None
        for seq, v in new.items():
            h = v[2]
            if old.get(seq) != h:
                if seq not in old and seq not in out:
                    if fresh is None:
                        fresh = self._fresh = set()
                    fresh.add(seq)
                out[seq] = h
        keep.update(new)
        self._tent = keep or None
        self._out = out or None

    def _finalise(self, n: int, limit: float) -> None:
        """The first ``n`` pending events become stable: their history is final, their ids go to
        the duplicate ring."""
        pending = self._pending
        tent = self._tent
        ring = self._ring if self._ring is not None else []
        keep_from = limit - DUPLICATE_TOLERANCE_S
        if tent:
            last = pending[n - 1]
            bound = (last[0], last[1])
            for seq in [s for s, v in tent.items() if (v[0], v[1]) <= bound]:
                del tent[seq]
            if not tent:
                self._tent = None
        for j in range(n):
            t, eid, _p = pending[j]
            if t >= keep_from:
                ring.append((t, eid))
        # a future event has t >= newest - window: only copies >= that - tolerance can match it
        k = 0
        while k < len(ring) and ring[k][0] < keep_from:
            k += 1
        del ring[:k]
        self._ring = ring or None

    def _stabilise_prefix(self) -> None:
        """Stabilise every event the window allows by folding it into the stable fold (used by
        compact(), and when the buffer grows faster than checkpoints stabilise)."""
        pending = self._pending
        limit = self._newest - self.window
        k = 0
        while k < len(pending) and pending[k][0] < limit:
            k += 1
        if k == 0:
            return
        ck, ck_n = self._ck, self._ck_n
        base: Fold | None = self._stable
        start = 0
        if ck is not None and ck_n <= k:
            base, start = ck, ck_n
        stable = base.copy() if base is not None else Fold()
        for j in range(start, k):
            step(stable, self._event(j), pending[j][0])
        self._finalise(k, limit)
        del pending[:k]
        self._stable = stable
        if ck is not None and ck_n > k:
            self._ck_n = ck_n - k
        else:
            self._ck = None
            self._ck_n = 0
        self._m = self._m - k if self._m >= k else -1

    # -- pending rows ------------------------------------------------------------------------------
    def _encode(self, t: float, eid: str, ev: ViewerEvent) -> str:
        """An event as a self-contained JSON row: what the fold reads, long strings that equal the
        viewer's base values (the first app id / user agent / label / media session seen; set
        once, never changed) written as 0, the session totals as a list."""
        vals = list(_ROW_GET(ev))
        base = self._base
        for b, i in enumerate(_BASE_INDEX):
            v = vals[i]
            if v:
                if base[b] is None:
                    base[b] = v
                if v == base[b]:
                    vals[i] = 0
        stats = vals[_I_STATS]
        if stats is not None:
            vals[_I_STATS] = [stats.get(k) for k in STAT_KEYS]
        # decode() copies into an exactly sized str (orjson's bytes keep a 4 KB buffer)
        return orjson.dumps([t, eid, ev.name, *vals, _slim_data(ev.name, ev.data)]).decode()

    def _decode(self, row: str) -> ViewerEvent:
        r = orjson.loads(row)
        base = self._base
        for b, i in enumerate(_BASE_INDEX):
            if r[3 + i] == 0 and not isinstance(r[3 + i], bool):
                r[3 + i] = base[b]
        st = r[3 + _I_STATS]
        stats = (
            {k: v for k, v in zip(STAT_KEYS, st, strict=True) if v is not None} if st is not None else None
        )
        t = float(r[0])
        for i in _ROW_SHARED:  # strings many events share: one copy in memory (as lvp.events does)
            if type(r[i]) is str:
                r[i] = sys.intern(r[i])
        return ViewerEvent(
            event_id=r[1], name=r[2], viewer_id=self.viewer_id, collector_ts=t, derived_ts=t,
            app_id=r[3], useragent=r[4], position_s=r[5], duration_s=r[6], media_label=r[7],
            paused=r[8], ended=r[9], playback_rate=r[10], volume=r[11], muted=r[12],
            fullscreen=r[13], quality=r[14], media_session_id=r[15], session_stats=stats,
            ad_id=r[17], ad_name=r[18], ad_break_id=r[19], data=r[20] or _NO_DATA,
        )  # fmt: skip

    def _encode_pending(self) -> None:
        pending = self._pending
        for j, (t, eid, p) in enumerate(pending):
            if type(p) is not str:
                pending[j] = (t, eid, self._encode(t, eid, p))  # type: ignore[arg-type]

    # -- reading -----------------------------------------------------------------------------------
    def profile(self) -> dict[str, Any]:
        """The API profile (docs/contracts.md) without ``active``. Built once per change: the
        consumer reads it to publish and again to flush; each caller gets its own copy."""
        p = self._prof
        if p is None:
            p = self._prof = self._build_profile()
        out = dict(p)
        if out["ad"] is not None:
            out["ad"] = dict(out["ad"])
        if out["last_error"] is not None:
            out["last_error"] = dict(out["last_error"])
        return out

    def _build_profile(self) -> dict[str, Any]:
        self._sync()
        f = self._cur
        sess = f.sess
        totals: Sequence[float]
        if f.closed is None and len(sess) == 1:
            totals = next(iter(sess.values())).vals
        elif not sess and f.closed is None:
            totals = ZEROS
        else:
            sums = list(f.closed) if f.closed is not None else [0.0] * N_STATS
            for acc in sess.values():
                vals = acc.vals
                for i in range(N_STATS):
                    sums[i] += vals[i]
            totals = sums
        pos, dur = f.pos, f.dur
        if pos is not None and dur is not None and dur > 0:
            percent: float | None = round(min(100.0, max(0.0, 100.0 * pos / dur)), 1)
        else:
            percent = f.pct
        ad = f.ad if f.status == sm.WATCHING_AD else None
        startup = None
        if f.play_ts is not None and f.start_ts is not None:
            startup = round(max(0.0, f.play_ts - f.start_ts), 3)
        error = f.error
        return {
            "viewer_id": self.viewer_id,
            "status": f.status,
            "app_id": f.app_id or None,
            "media_label": f.label,
            "media_session_id": f.sid,
            "position_s": pos,
            "duration_s": dur,
            "percent_progress": percent,
            "ad": {"ad_id": ad[0], "name": ad[1], "break_id": ad[2]} if ad is not None else None,
            "plays": f.plays,
            "pauses": f.pauses,
            "seeks": f.seeks,
            "ad_breaks": round(totals[S_AD_BREAKS]),
            "ads_started": round(totals[S_ADS]),
            "ads_completed": f.ads_done,
            "ads_skipped": round(totals[S_SKIPPED]),
            "ads_clicked": round(totals[S_CLICKED]),
            "buffer_events": f.buffers,
            "errors": f.errors,
            "play_time_s": round(totals[S_PLAY], 3),
            "paused_time_s": round(totals[S_PAUSED], 3),
            "ad_time_s": round(totals[S_AD_TIME], 3),
            "buffering_time_s": round(totals[S_BUFFERING], 3),
            "startup_time_s": startup,
            "first_seen": iso(self._first) if self._first is not None else None,
            "last_seen": iso(self._last) if self._last is not None else None,
            "last_event_id": f.eid or None,
            "last_event_name": f.name or None,
            "events": self._events,
            "device_class": device_class(f.ua),
            "last_error": {"code": error[0], "message": error[1]} if error is not None else None,
            "playback_rate": f.rate,
            "volume": f.volume,
            "muted": f.muted,
            "fullscreen": f.fullscreen,
            "quality": f.quality,
        }

    @property
    def status(self) -> str:
        self._sync()
        return self._cur.status

    @property
    def last_seen(self) -> float | None:
        """Latest collector time seen (epoch seconds), for the consumer's bookkeeping."""
        if self._blob is not None:
            self._thaw()
        return self._last

    @property
    def events(self) -> int:
        if self._blob is not None:
            self._thaw()
        return self._events

    @property
    def pending(self) -> int:
        """Events still inside the reorder window (diagnostics)."""
        if self._blob is not None:
            self._thaw()
        return len(self._pending)

    @property
    def frozen(self) -> bool:
        return self._blob is not None

    def history_changes(self) -> tuple[list[HistoryEntry], list[str]]:
        """``(entries to put, seqs to delete)`` since the previous call (then cleared)."""
        self._sync()
        out = self._out
        self._out = None
        self._fresh = None
        if not out:
            return [], []
        puts = sorted((h for h in out.values() if h is not None), key=lambda h: h.seq)
        dels = sorted(seq for seq, h in out.items() if h is None)
        return puts, dels

    def compact(self, freeze: bool = False) -> None:
        """Trim memory; results never change. Cheap (after :meth:`dump` nearly free): keeps the
        pending events as compact rows instead of the events handed to :meth:`apply`. With
        ``freeze`` — for viewers quiet for a while: it costs a fold of the stabilised events and
        a compression now, a decompression and :meth:`load` when the viewer returns — keep only
        the compressed state (a few hundred bytes for a typical viewer) and the newest event time
        (for :meth:`apply`'s lateness check) until the viewer is used again."""
        if self._blob is not None:
            return
        self._prof = self._sjson = None  # caches for the next read / dump: rebuilt when needed
        self._sync()
        self._encode_pending()
        if freeze:
            self._stabilise_prefix()
            self._sync()
            blob = _freeze(self.dump().encode())
            self._stable = self._ck = self._ring = self._tent = self._out = self._fresh = self._sjson = None
            self._cur = _FROZEN
            self._base = _NO_BASE
            self._pending = _NO_PENDING
            self._first = self._last = None  # (in the blob, like everything else)
            self._m = self._ck_n = self._events = 0
            self._blob = blob

    def _thaw(self) -> None:
        blob = self._blob
        if blob is None:
            return
        self._blob = None
        s = ViewerState.load(self.viewer_id, _unfreeze(blob), self.window)
        for name in ViewerState.__slots__:
            setattr(self, name, getattr(s, name))

    # -- persistence -------------------------------------------------------------------------------
    def dump(self) -> str:
        """Compact JSON of the full engine state (DynamoDB attribute ``state``)."""
        if self._blob is not None:
            return _unfreeze(self._blob).decode()
        self._sync()
        self._encode_pending()
        doc = {
            "v": STATE_VERSION,
            "n": self._newest if self._newest != _NEG_INF else None,
            "f": self._first,
            "l": self._last,
            "e": self._events,
            "s": self._stable_json(),
            "b": self._base,
            "p": [orjson.Fragment(p) for _t, _e, p in self._pending],  # type: ignore[arg-type]  # all rows
            "r": [list(x) for x in self._ring] if self._ring else None,
            "t": [[v[0], *_h_json(v[2])] for v in self._tent.values()] if self._tent else None,
            "o": [[seq, _h_json(h) if h is not None else None] for seq, h in self._out.items()]
            if self._out
            else None,
            "fr": sorted(self._fresh) if self._out and self._fresh else None,
        }
        return orjson.dumps(doc).decode()

    def _stable_json(self) -> orjson.Fragment | None:
        stable = self._stable
        if stable is None:
            return None
        cached = self._sjson
        if cached is None or cached[0] is not stable:  # folds are never changed once stable
            cached = self._sjson = (stable, orjson.Fragment(orjson.dumps(stable.to_json()).decode()))
        return cached[1]

    @classmethod
    def load(cls, viewer_id: str, state: str | bytes, reorder_window_s: float = 10.0) -> ViewerState:
        """The engine as :meth:`dump` left it. Raises ValueError for a state it cannot read.

        The pending events are folded again; should that give a different history than the one
        stored (the state machine changed since), the difference is queued in
        :meth:`history_changes`.
        """
        try:
            doc = orjson.loads(state)
            if not isinstance(doc, dict) or doc.get("v") != STATE_VERSION:
                raise ValueError(
                    f"unsupported state version {doc.get('v') if isinstance(doc, dict) else doc!r}"
                )
            s = cls(viewer_id, reorder_window_s)
            s._newest = float(doc["n"]) if doc.get("n") is not None else _NEG_INF
            s._first = float(doc["f"]) if doc.get("f") is not None else None
            s._last = float(doc["l"]) if doc.get("l") is not None else None
            s._events = int(doc.get("e") or 0)
            s._stable = Fold.from_json(doc["s"]) if doc.get("s") is not None else None
            base = doc.get("b")
            if base is not None:
                if not isinstance(base, list) or len(base) != len(_BASE_FIELDS):
                    raise ValueError("bad base values")
                s._base = [
                    None if v is None else sys.intern(str(v)) if f in _SHARED_ROW_FIELDS else str(v)
                    for f, v in zip(_BASE_FIELDS, base, strict=True)
                ]
            for row in doc.get("p") or []:
                if not isinstance(row, list) or len(row) != 4 + len(_ROW_FIELDS):
                    raise ValueError("bad pending row")
                _check_row(row)
                s._pending.append((float(row[0]), row[1], orjson.dumps(row).decode()))
            s._pending.sort(key=_entry_key)
            if doc.get("r"):
                s._ring = [(float(rt), str(rid)) for rt, rid in doc["r"]]
            if doc.get("t"):
                s._tent = {}
                for x in doc["t"]:
                    h = _h_load(viewer_id, x[1:])
                    s._tent[h.seq] = (float(x[0]), h.event_id, h)
            if doc.get("o"):
                s._out = {str(seq): (_h_load(viewer_id, x) if x is not None else None) for seq, x in doc["o"]}
                if doc.get("fr"):
                    s._fresh = {str(x) for x in doc["fr"]}
            s._m = -1
            s._sync()
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"unreadable viewer state for {viewer_id!r}: {exc}") from None
        return s


_NUM: Final = (int, float)
_OPT_STR: Final = (str, type(None), int)  # int: 0 = the base value
# What each column of a pending row may hold (after t, event id, name; before data).
_ROW_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "app_id": _OPT_STR, "useragent": _OPT_STR, "position_s": (*_NUM, type(None)),
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
    stats = row[3 + _I_STATS]
    if stats is not None and (
        len(stats) != N_STATS
        or not all(v is None or (isinstance(v, _NUM) and not isinstance(v, bool)) for v in stats)
    ):
        raise ValueError("bad pending row session totals")


_FROZEN: Final = Fold()  # stands in for the current fold while a viewer is frozen (never changed)

# Frozen states are compressed with a preset dictionary: what every dump() has in common (its
# skeleton, statuses, event names, the usual user-agent fragments), so that a few hundred bytes
# of JSON compress as well as a long text would. Most frequent last (shortest distances). It
# only ever lives in memory: change it freely.
_ZDICT: Final = "".join(
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/"
        ".0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/ Safari/605.1.15",
        "Mozilla/5.0 (iPhone; CPU iPhone OS  like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/ Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/"
        ".0.0.0 Safari/537.36",
        "".join(f'"{name}",' for name in (*_MEDIA_NAMES, *sm.STATUSES)),
        '{"v":1,"n":1,"f":1,"l":1,"e":1,"s":["watching",null,false,false,1,"","ping","",""],',
        '"b":["","","",""],"p":[[1,"","ping",0,0,1.0,1.0,0,false,false,1.0,100,false,false,',
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
