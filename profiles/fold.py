"""The in-order fold of one viewer's events: everything but the delivery order.

:class:`Fold` holds what folding a viewer's events in ``(t, event_id)`` order has produced so far
(the state machine of :mod:`profiles.state`, the latest player settings, the counters); :func:`step`
folds the next event. :mod:`profiles.engine` decides the order and keeps folds for late events.

Counters and times: the media session entity carries running totals (monotonic within a media
session); per media session the fold keeps the maximum of each, and the profile sums over
sessions. A total the tracker never sent falls back to counting events (``ad_break_start``,
``ad_start``, ``ad_skip``, ``ad_click``) or adding up the time between consecutive events spent in
``watching`` / ``paused`` / ``watching_ad`` / ``buffering`` (gaps capped at :data:`MAX_GAP_S`).
``plays``, ``pauses``, ``seeks`` (``seek_end``), ``buffer_events`` (``buffer_start``), ``errors``
and ``ads_completed`` count events. State-bearing fields (position, label, volume, ...) are those
of the latest event that carried them. An event with a new ``media_session_id`` starts a fresh
session: the machine restarts from ``idle``, the startup time and percent progress start again.

Pure code: no I/O, no clock.
"""

from __future__ import annotations

import operator
import sys
from array import array
from typing import Any, Final

from lvp.events import MEDIA_EVENTS, SESSION_STATS, ViewerEvent
from profiles import state as sm
from profiles.device import DEVICE_CLASSES, device_class

__all__ = [
    "DATA_KEYS",
    "MAX_GAP_S",
    "MAX_SESSIONS",
    "N_STATS",
    "ROW_FIELDS",
    "STAT_KEYS",
    "S_ADS",
    "S_AD_BREAKS",
    "S_AD_TIME",
    "S_BUFFERING",
    "S_CLICKED",
    "S_PAUSED",
    "S_PLAY",
    "S_SKIPPED",
    "ZEROS",
    "Acc",
    "Fold",
    "Row",
    "step",
    "to_row",
]  # fmt: skip

#: Fallback times (no session entity): a gap between two events counts at most this long.
MAX_GAP_S: Final = 60.0
#: Media sessions kept apart per viewer; older ones are summed into one "closed" total.
MAX_SESSIONS: Final = 4

# --- session totals ------------------------------------------------------------------------------
STAT_KEYS: Final = tuple(SESSION_STATS)  # entity keys, fixed order
_STAT_FIELDS: Final = tuple(SESSION_STATS.values())  # profile fields, same order
N_STATS: Final = len(STAT_KEYS)
_STAT_INDEX: Final = {k: i for i, k in enumerate(STAT_KEYS)}
_FIELD_INDEX: Final = {f: i for i, f in enumerate(_STAT_FIELDS)}
S_PLAY: Final = _FIELD_INDEX["play_time_s"]
S_PAUSED: Final = _FIELD_INDEX["paused_time_s"]
S_AD_TIME: Final = _FIELD_INDEX["ad_time_s"]
S_BUFFERING: Final = _FIELD_INDEX["buffering_time_s"]
S_AD_BREAKS: Final = _FIELD_INDEX["ad_breaks"]
S_ADS: Final = _FIELD_INDEX["ads_started"]
S_SKIPPED: Final = _FIELD_INDEX["ads_skipped"]
S_CLICKED: Final = _FIELD_INDEX["ads_clicked"]
_TIME_SLOT: Final = {
    sm.WATCHING: S_PLAY,
    sm.PAUSED: S_PAUSED,
    sm.WATCHING_AD: S_AD_TIME,
    sm.BUFFERING: S_BUFFERING,
}
ZEROS: Final = (0.0,) * N_STATS

# --- per-event effects (codes) -------------------------------------------------------------------
(
    _K_PLAY, _K_PAUSE, _K_SEEK_END, _K_BUFFER_START, _K_ERROR, _K_AD_COMPLETE, _K_AD_SKIP,
    _K_AD_START, _K_BREAK_START, _K_BREAK_END, _K_AD_CLICK, _K_READY, _K_PERCENT, _K_RATE,
    _K_VOLUME, _K_FULLSCREEN, _K_QUALITY,
) = range(1, 18)  # fmt: skip
_KIND: Final[dict[str, int]] = {
    "play": _K_PLAY, "pause": _K_PAUSE, "seek_end": _K_SEEK_END, "buffer_start": _K_BUFFER_START,
    "error": _K_ERROR, "ad_complete": _K_AD_COMPLETE, "ad_skip": _K_AD_SKIP, "ad_start": _K_AD_START,
    "ad_break_start": _K_BREAK_START, "ad_break_end": _K_BREAK_END, "ad_click": _K_AD_CLICK,
    "ready": _K_READY, "percent_progress": _K_PERCENT, "playback_rate_change": _K_RATE,
    "volume_change": _K_VOLUME, "fullscreen_change": _K_FULLSCREEN, "quality_change": _K_QUALITY,
}  # fmt: skip
# Events counted by the fallback when the session entity lacks the total.
_COUNT_SLOT: Final[dict[int, int]] = {
    _K_BREAK_START: S_AD_BREAKS,
    _K_AD_START: S_ADS,
    _K_AD_SKIP: S_SKIPPED,
    _K_AD_CLICK: S_CLICKED,
}
# The event data keys the engine reads, by event (everything else is dropped from pending events).
DATA_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "percent_progress": ("percentProgress",),
    "error": ("errorCode", "errorName", "errorDescription"),
    "playback_rate_change": ("newRate",),
    "volume_change": ("newVolume",),
    "fullscreen_change": ("fullscreen",),
    "quality_change": ("newQuality",),
}
_MEDIA: Final = frozenset(MEDIA_EVENTS)
_PASSIVE: Final = sm.PASSIVE_EVENTS
_TRANSITIONS: Final = sm.TRANSITIONS
_SAME: Final = sm.SAME
_WATCHING_AD: Final = sm.WATCHING_AD


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _str(v: Any) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    return None


class Acc:
    """Totals of one media session: ``vals`` by :data:`SESSION_STATS` order; bit i of ``mask``
    set once the session entity carried stat i (then ``vals[i]`` is its maximum, else the
    fallback count / time)."""

    __slots__ = ("mask", "vals")

    def __init__(self, mask: int = 0, vals: array[float] | None = None) -> None:
        self.mask = mask
        self.vals = vals if vals is not None else array("d", ZEROS)

    def copy(self) -> Acc:
        return Acc(self.mask, array("d", self.vals))


_FOLD_SLOTS: Final = (
    "status", "resume", "in_break", "explicit",
    "ts", "eid", "name",
    "app_id", "device", "pos", "dur", "label", "rate", "volume", "muted", "fullscreen", "quality", "pct",
    "sid", "sess", "closed", "acc",
    "start_ts", "start_ready", "play_ts",
    "plays", "pauses", "seeks", "buffers", "errors", "ads_done",
    "error", "ad", "brk", "done_ad",
)  # fmt: skip


_FOLD_INTS: Final = ("plays", "pauses", "seeks", "buffers", "errors", "ads_done")
_FOLD_FLOATS: Final = ("ts", "pos", "dur", "rate", "pct", "start_ts", "play_ts")
_FOLD_STRS: Final = ("eid", "name", "app_id", "device")
#: String fields whose values many viewers share (one copy in memory: interned, as the events'
#: strings are by lvp.events)
_FOLD_SHARED: Final = (
    "status", "resume", "name", "app_id", "device", "label", "quality", "brk", "done_ad",
)  # fmt: skip
_FOLD_GET: Final = operator.attrgetter(*_FOLD_SLOTS)
_I_SESS: Final = _FOLD_SLOTS.index("sess")
_I_CLOSED: Final = _FOLD_SLOTS.index("closed")
_I_ACC: Final = _FOLD_SLOTS.index("acc")


class Fold:
    """Everything the in-order fold of a viewer's events has produced so far."""

    __slots__ = _FOLD_SLOTS

    status: str
    resume: str | None
    in_break: bool
    explicit: bool
    ts: float | None
    eid: str
    name: str
    app_id: str
    device: str  # profiles.device.device_class of the latest user agent (never the user agent)
    pos: float | None
    dur: float | None
    label: str | None
    rate: float | None
    volume: int | None
    muted: bool | None
    fullscreen: bool | None
    quality: str | None
    pct: float | None
    sid: str | None
    sess: dict[str, Acc] | None  # the older media sessions (least recently used first), if any
    closed: array[float] | None
    acc: Acc | None  # the current media session's totals (key: sid, or "" without one)
    start_ts: float | None
    start_ready: bool
    play_ts: float | None
    plays: int
    pauses: int
    seeks: int
    buffers: int
    errors: int
    ads_done: int
    error: tuple[str | None, str | None] | None
    ad: tuple[str, str | None, str | None] | None
    brk: str | None
    done_ad: str | None

    def __init__(self) -> None:
        self.status = sm.IDLE
        self.resume = None
        self.in_break = False
        self.explicit = False
        self.ts = None
        self.eid = ""
        self.name = ""
        self.app_id = ""
        self.device = "unknown"
        self.pos = self.dur = None
        self.label = None
        self.rate = None
        self.volume = None
        self.muted = self.fullscreen = None
        self.quality = None
        self.pct = None
        self.sid = None
        self.sess = None
        self.closed = None
        self.acc = None
        self.start_ts = None
        self.start_ready = False
        self.play_ts = None
        self.plays = self.pauses = self.seeks = self.buffers = self.errors = self.ads_done = 0
        self.error = None
        self.ad = None
        self.brk = None
        self.done_ad = None

    def copy(self) -> Fold:
        """An independent copy (written out: this runs on every checkpoint and re-fold)."""
        new = Fold.__new__(Fold)
        new.status = self.status
        new.resume = self.resume
        new.in_break = self.in_break
        new.explicit = self.explicit
        new.ts = self.ts
        new.eid = self.eid
        new.name = self.name
        new.app_id = self.app_id
        new.device = self.device
        new.pos = self.pos
        new.dur = self.dur
        new.label = self.label
        new.rate = self.rate
        new.volume = self.volume
        new.muted = self.muted
        new.fullscreen = self.fullscreen
        new.quality = self.quality
        new.pct = self.pct
        new.sid = self.sid
        sess = self.sess
        new.sess = {k: a.copy() for k, a in sess.items()} if sess is not None else None
        new.closed = array("d", self.closed) if self.closed is not None else None
        acc = self.acc
        new.acc = Acc(acc.mask, array("d", acc.vals)) if acc is not None else None
        new.start_ts = self.start_ts
        new.start_ready = self.start_ready
        new.play_ts = self.play_ts
        new.plays = self.plays
        new.pauses = self.pauses
        new.seeks = self.seeks
        new.buffers = self.buffers
        new.errors = self.errors
        new.ads_done = self.ads_done
        new.error = self.error
        new.ad = self.ad
        new.brk = self.brk
        new.done_ad = self.done_ad
        return new

    def _acc_key(self) -> str:
        return self.sid if self.sid is not None else ""

    def sessions(self) -> dict[str, Acc]:
        """Every media session's totals, least recently used first (the current one last)."""
        out = dict(self.sess) if self.sess is not None else {}
        if self.acc is not None:
            out[self._acc_key()] = self.acc
        return out

    # -- serialisation --------------------------------------------------------------------------
    def to_json(self) -> list[Any]:
        out = list(_FOLD_GET(self))
        out[_I_SESS] = [[k, a.mask, a.vals.tolist()] for k, a in self.sessions().items()]
        out[_I_CLOSED] = self.closed.tolist() if self.closed is not None else None
        out[_I_ACC] = self._acc_key() if self.acc is not None else None
        return out

    def pack(self) -> tuple[Any, ...]:
        """The fold as plain values (for :mod:`marshal`; :meth:`unpack` reverses it exactly)."""
        vals = list(_FOLD_GET(self))
        sess, closed, acc = self.sess, self.closed, self.acc
        if sess is not None:
            vals[_I_SESS] = tuple((k, a.mask, a.vals.tobytes()) for k, a in sess.items())
        if closed is not None:
            vals[_I_CLOSED] = closed.tobytes()
        if acc is not None:
            vals[_I_ACC] = (acc.mask, acc.vals.tobytes())
        return tuple(vals)

    @classmethod
    def unpack(cls, vals: tuple[Any, ...]) -> Fold:
        f = cls.__new__(cls)
        (
            f.status, f.resume, f.in_break, f.explicit, f.ts, f.eid, f.name, f.app_id, f.device,
            f.pos, f.dur, f.label, f.rate, f.volume, f.muted, f.fullscreen, f.quality, f.pct,
            f.sid, f.sess, f.closed, f.acc, f.start_ts, f.start_ready, f.play_ts, f.plays,
            f.pauses, f.seeks, f.buffers, f.errors, f.ads_done, f.error, f.ad, f.brk, f.done_ad,
        ) = vals  # fmt: skip
        sess, closed, acc = vals[_I_SESS], vals[_I_CLOSED], vals[_I_ACC]
        if sess is not None:
            f.sess = {k: Acc(mask, _doubles(b)) for k, mask, b in sess}
        if closed is not None:
            f.closed = _doubles(closed)
        if acc is not None:
            f.acc = Acc(acc[0], _doubles(acc[1]))
        return f

    @classmethod
    def from_json(cls, data: list[Any]) -> Fold:
        if not isinstance(data, list) or len(data) != len(_FOLD_SLOTS):
            raise ValueError("fold has the wrong shape")
        f = cls.__new__(cls)
        for name, v in zip(_FOLD_SLOTS, data, strict=True):
            setattr(f, name, v)
        sess = {str(k): Acc(int(mask), array("d", vals)) for k, mask, vals in data[_FOLD_SLOTS.index("sess")]}
        closed = data[_FOLD_SLOTS.index("closed")]
        f.closed = array("d", closed) if closed is not None else None
        key = data[_FOLD_SLOTS.index("acc")]
        if key is not None and key != (f.sid if f.sid is not None else ""):
            raise ValueError("the current session is not the fold's")
        f.acc = sess.pop(key) if key is not None else None
        f.sess = sess or None
        f.error = tuple(f.error) if f.error is not None else None  # type: ignore[assignment]
        f.ad = tuple(f.ad) if f.ad is not None else None  # type: ignore[assignment]
        if f.status not in sm.STATUSES or (f.resume is not None and f.resume not in sm.STATUSES):
            raise ValueError(f"unknown status {f.status!r} / {f.resume!r}")
        for name in _FOLD_INTS:
            v = getattr(f, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(f"fold field {name} is not an integer")
        for name in _FOLD_FLOATS:
            v = getattr(f, name)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)):
                raise ValueError(f"fold field {name} is not a number")
        for name in _FOLD_STRS:
            if not isinstance(getattr(f, name), str):
                raise ValueError(f"fold field {name} is not a string")
        if f.device not in DEVICE_CLASSES:
            raise ValueError(f"unknown device class {f.device!r}")
        for name in _FOLD_SHARED:
            v = getattr(f, name)
            if type(v) is str:
                setattr(f, name, sys.intern(v))
        return f


def _doubles(b: bytes) -> array[float]:
    a = array("d")
    a.frombytes(b)
    return a


def _switch_session(f: Fold, sid: str) -> None:
    """``sid`` differs from the fold's media session: a fresh session starts (from ``idle``)."""
    if f.sid is not None:
        f.status, f.resume, f.in_break, f.explicit = sm.INITIAL
        f.ad = f.brk = f.done_ad = None
        f.start_ts = f.play_ts = None
        f.start_ready = False
        f.pct = None
    sess = f.sessions()
    f.sid = sid
    acc = sess.pop(sid, None)
    if acc is None:
        acc = Acc()
        if len(sess) >= MAX_SESSIONS:  # fold the least recently used session into the closed total
            old_key = next(iter(sess))
            old = sess.pop(old_key)
            closed = f.closed if f.closed is not None else array("d", ZEROS)
            for i in range(N_STATS):
                closed[i] += old.vals[i]
            f.closed = closed
    f.sess = sess or None  # (the older ones; the current one is f.acc)
    f.acc = acc


# --- rows: events as the fold reads them ---------------------------------------------------------
#: One event as a tuple, in this order: time ``t`` (the engine's ordering time), event id, name,
#: then what the fold reads of a :class:`~lvp.events.ViewerEvent` — its device class (never the
#: user agent), the session totals as a tuple in :data:`STAT_KEYS` order (None where absent) and
#: only the event data keys of :data:`DATA_KEYS`. The engine keeps pending events as rows.
Row = tuple[Any, ...]
ROW_FIELDS: Final = (
    "t", "event_id", "name", "app_id", "device", "position_s", "duration_s", "media_label",
    "paused", "ended", "playback_rate", "volume", "muted", "fullscreen", "quality",
    "media_session_id", "session_stats", "ad_id", "ad_name", "ad_break_id", "data",
)  # fmt: skip
(
    R_T, R_EID, R_NAME, R_APP, R_DEVICE, R_POS, R_DUR, R_LABEL, R_PAUSED, R_ENDED, R_RATE,
    R_VOLUME, R_MUTED, R_FULLSCREEN, R_QUALITY, R_SID, R_STATS, R_AD_ID, R_AD_NAME, R_BREAK, R_DATA,
) = range(len(ROW_FIELDS))  # fmt: skip
_NO_DATA: Final[dict[str, Any]] = {}


def to_row(ev: ViewerEvent, t: float) -> Row:
    """``ev`` as a :data:`Row` at time ``t`` (what the fold reads of it, nothing more)."""
    ua = ev.useragent
    stats = ev.session_stats
    data = ev.data
    name = ev.name
    if data:
        keys = DATA_KEYS.get(name)
        data = {k: data[k] for k in keys if k in data} if keys else _NO_DATA
        data = data or _NO_DATA
    return (
        t, ev.event_id, name, ev.app_id, device_class(ua) if ua else None, ev.position_s,
        ev.duration_s, ev.media_label, ev.paused, ev.ended, ev.playback_rate, ev.volume, ev.muted,
        ev.fullscreen, ev.quality, ev.media_session_id,
        tuple(map(stats.get, STAT_KEYS)) if stats is not None else None,
        ev.ad_id, ev.ad_name, ev.ad_break_id, data or _NO_DATA,
    )  # fmt: skip


def step(f: Fold, ev: Row) -> str | None:
    """Fold one event (a :data:`Row`, the next in ``(t, event_id)`` order). Returns the previous
    status when the status changed, else None."""
    t: float = ev[R_T]
    name = ev[R_NAME]
    status = orig = f.status
    prev_ts = f.ts
    acc = f.acc
    # time since the previous event, spent in the status it left us in (fallback totals only)
    if prev_ts is not None and acc is not None:
        slot = _TIME_SLOT.get(status)
        if slot is not None and not (acc.mask >> slot) & 1:
            dt = t - prev_ts
            acc.vals[slot] += dt if dt < MAX_GAP_S else MAX_GAP_S
    f.ts = t
    f.eid = ev[R_EID]
    f.name = name
    v: Any = ev[R_APP]
    if v:
        f.app_id = v
    v = ev[R_DEVICE]
    if v:
        f.device = v

    sid = ev[R_SID]
    if sid is not None:
        if sid != f.sid:
            _switch_session(f, sid)
            status = f.status
        acc = f.acc
    elif acc is None:
        if name not in _MEDIA:
            return None  # a page view / page ping / other event before any media: nothing more
        acc = f.acc = Acc()  # the session without an id: key ""
    if name in _MEDIA and f.start_ts is None:
        f.start_ts = t

    # media player entity (latest non-null wins)
    v = ev[R_POS]
    if v is not None:
        f.pos = v
    v = ev[R_DUR]
    if v is not None:
        f.dur = v
    v = ev[R_LABEL]
    if v is not None:
        f.label = v
    v = ev[R_RATE]
    if v is not None:
        f.rate = v
    v = ev[R_VOLUME]
    if v is not None:
        f.volume = v
    v = ev[R_MUTED]
    if v is not None:
        f.muted = v
    v = ev[R_FULLSCREEN]
    if v is not None:
        f.fullscreen = v
    v = ev[R_QUALITY]
    if v is not None:
        f.quality = v

    # media session entity: running totals, maximum per session
    stats = ev[R_STATS]
    if stats and acc is not None:
        vals = acc.vals
        mask = acc.mask
        for i, value in enumerate(stats):
            if value is None:
                continue
            if (mask >> i) & 1:
                if value > vals[i]:
                    vals[i] = value
            else:
                mask |= 1 << i
                vals[i] = value
        acc.mask = mask

    kind = _KIND.get(name, 0)
    if kind:
        _effects(f, ev, kind, t, acc)

    # the state machine
    if name not in _PASSIVE and _TRANSITIONS.get((status, name), _SAME) != _SAME:
        f.status, f.resume, f.in_break, f.explicit = sm.transition(
            (status, f.resume, f.in_break, f.explicit), name, ev[R_PAUSED], ev[R_ENDED]
        )
    new = f.status
    # the current ad: shown while watching_ad; an ad event that missed its ad_start sets it
    if new != _WATCHING_AD:
        if f.ad is not None:
            f.ad = None
    else:
        ad_id = ev[R_AD_ID]
        if ad_id is not None and f.ad is None and kind not in _AD_CLEARING and ad_id != f.done_ad:
            f.ad = (ad_id, ev[R_AD_NAME], ev[R_BREAK] or f.brk)
        elif ev[R_BREAK] is not None and kind not in _AD_CLEARING:
            f.brk = ev[R_BREAK]
    return None if new == orig else orig


_AD_CLEARING: Final = frozenset((_K_AD_COMPLETE, _K_AD_SKIP, _K_BREAK_END, _K_BREAK_START))


def _effects(f: Fold, ev: Row, kind: int, t: float, acc: Acc | None) -> None:
    """Counters, the ad, startup and recorded settings of one event (everything but the status)."""
    if acc is not None:
        slot = _COUNT_SLOT.get(kind)
        if slot is not None and not (acc.mask >> slot) & 1:
            acc.vals[slot] += 1.0
    if kind == _K_PLAY:
        f.plays += 1
        if f.play_ts is None:
            f.play_ts = t
    elif kind == _K_PAUSE:
        f.pauses += 1
    elif kind == _K_SEEK_END:
        f.seeks += 1
    elif kind == _K_BUFFER_START:
        f.buffers += 1
    elif kind == _K_ERROR:
        f.errors += 1
        data = ev[R_DATA]
        code = _str(data.get("errorCode"))
        name = _str(data.get("errorName"))
        message = _str(data.get("errorDescription"))
        f.error = (code or name, message or name)
    elif kind in (_K_AD_COMPLETE, _K_AD_SKIP):
        if kind == _K_AD_COMPLETE:
            f.ads_done += 1
        ad = f.ad
        if ad is not None and (ev[R_AD_ID] is None or ev[R_AD_ID] == ad[0]):
            f.ad = None
        f.done_ad = ev[R_AD_ID]
    elif kind == _K_AD_START:
        f.ad = (ev[R_AD_ID], ev[R_AD_NAME], ev[R_BREAK] or f.brk) if ev[R_AD_ID] is not None else None
        f.done_ad = None
    elif kind == _K_BREAK_START:
        f.brk = ev[R_BREAK]
        f.ad = None
        f.done_ad = None
    elif kind == _K_BREAK_END:
        f.brk = None
        f.ad = None
    elif kind == _K_READY:
        if f.play_ts is None and not f.start_ready:
            f.start_ts = t
            f.start_ready = True
    elif kind == _K_PERCENT:
        p = _num(ev[R_DATA].get("percentProgress"))
        if p is not None:
            f.pct = p
    elif kind == _K_RATE:
        r = _num(ev[R_DATA].get("newRate"))
        if r is not None:
            f.rate = r
    elif kind == _K_VOLUME:
        vol = ev[R_DATA].get("newVolume")
        if isinstance(vol, int) and not isinstance(vol, bool):
            f.volume = vol
    elif kind == _K_FULLSCREEN:
        fs = ev[R_DATA].get("fullscreen")
        if isinstance(fs, bool):
            f.fullscreen = fs
    elif kind == _K_QUALITY:
        q = _str(ev[R_DATA].get("newQuality"))
        if q is not None:
            f.quality = q
