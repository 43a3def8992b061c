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


#: The fields of :class:`Fold`, in the order the stored state writes them (docs/state-format.md:
#: by position, so the names are free to change, the order is not). Where the profile has the
#: same field, the fold uses the profile's name (docs/contracts.md).
_FOLD_SLOTS: Final = (
    "status", "resume_status", "in_ad_break", "resume_is_explicit",
    "last_event_t", "last_event_id", "last_event_name",
    "app_id", "device_class", "position_s", "duration_s", "media_label", "playback_rate", "volume",
    "muted", "fullscreen", "quality", "percent_progress",
    "media_session_id", "older_totals", "closed_totals", "current_totals",
    "startup_start_t", "startup_from_ready", "first_play_t",
    "plays", "pauses", "seeks", "buffer_events", "errors", "ads_completed",
    "last_error", "ad", "ad_break_id", "finished_ad_id",
)  # fmt: skip


_FOLD_INTS: Final = ("plays", "pauses", "seeks", "buffer_events", "errors", "ads_completed")
_FOLD_FLOATS: Final = (
    "last_event_t", "position_s", "duration_s", "playback_rate", "percent_progress", "startup_start_t",
    "first_play_t",
)  # fmt: skip
_FOLD_STRS: Final = ("last_event_id", "last_event_name", "app_id", "device_class")
#: String fields whose values many viewers share (one copy in memory: interned, as the events'
#: strings are by lvp.events)
_FOLD_SHARED: Final = (
    "status", "resume_status", "last_event_name", "app_id", "device_class", "media_label", "quality",
    "ad_break_id", "finished_ad_id",
)  # fmt: skip
_FOLD_GET: Final = operator.attrgetter(*_FOLD_SLOTS)
_I_OLDER_TOTALS: Final = _FOLD_SLOTS.index("older_totals")
_I_CLOSED_TOTALS: Final = _FOLD_SLOTS.index("closed_totals")
_I_CURRENT_TOTALS: Final = _FOLD_SLOTS.index("current_totals")


class Fold:
    """Everything the in-order fold of a viewer's events has produced so far.

    Fields named as in the profile (docs/contracts.md) hold what the profile shows, or what it is
    computed from (``percent_progress``: the latest ``percent_progress`` event's value, shown
    when position and duration cannot give it). The others: ``resume_status``, ``in_ad_break``
    and ``resume_is_explicit`` are the rest of the state machine (:mod:`profiles.state`:
    ``resume``, ``in_break``, ``explicit``); ``last_event_t`` is the ordering time ``t`` of the
    latest event folded; the ``*_totals`` are the media sessions' running totals; startup time is
    ``first_play_t - startup_start_t`` (``startup_from_ready``: that start was a ``ready``
    event); ``ad_break_id`` is the ad break being shown and ``finished_ad_id`` the ad that last
    completed or was skipped (a late event of it must not show it again).
    """

    __slots__ = _FOLD_SLOTS

    status: str
    resume_status: str | None
    in_ad_break: bool
    resume_is_explicit: bool
    last_event_t: float | None
    last_event_id: str
    last_event_name: str
    app_id: str
    device_class: str  # profiles.device.device_class of the latest user agent (never the agent)
    position_s: float | None
    duration_s: float | None
    media_label: str | None
    playback_rate: float | None
    volume: int | None
    muted: bool | None
    fullscreen: bool | None
    quality: str | None
    percent_progress: float | None
    media_session_id: str | None
    older_totals: dict[str, Acc] | None  # the older media sessions (least recently used first), if any
    closed_totals: array[float] | None  # the sum of the sessions beyond MAX_SESSIONS, if any
    current_totals: Acc | None  # the current media session's (key: media_session_id, or "" without one)
    startup_start_t: float | None
    startup_from_ready: bool
    first_play_t: float | None
    plays: int
    pauses: int
    seeks: int
    buffer_events: int
    errors: int
    ads_completed: int
    last_error: tuple[str | None, str | None] | None
    ad: tuple[str, str | None, str | None] | None
    ad_break_id: str | None
    finished_ad_id: str | None

    def __init__(self) -> None:
        self.status = sm.IDLE
        self.resume_status = None
        self.in_ad_break = False
        self.resume_is_explicit = False
        self.last_event_t = None
        self.last_event_id = ""
        self.last_event_name = ""
        self.app_id = ""
        self.device_class = "unknown"
        self.position_s = self.duration_s = None
        self.media_label = None
        self.playback_rate = None
        self.volume = None
        self.muted = self.fullscreen = None
        self.quality = None
        self.percent_progress = None
        self.media_session_id = None
        self.older_totals = None
        self.closed_totals = None
        self.current_totals = None
        self.startup_start_t = None
        self.startup_from_ready = False
        self.first_play_t = None
        self.plays = self.pauses = self.seeks = self.errors = 0
        self.buffer_events = self.ads_completed = 0
        self.last_error = None
        self.ad = None
        self.ad_break_id = None
        self.finished_ad_id = None

    def copy(self) -> Fold:
        """An independent copy (written out: this runs on every checkpoint and re-fold)."""
        new = Fold.__new__(Fold)
        new.status = self.status
        new.resume_status = self.resume_status
        new.in_ad_break = self.in_ad_break
        new.resume_is_explicit = self.resume_is_explicit
        new.last_event_t = self.last_event_t
        new.last_event_id = self.last_event_id
        new.last_event_name = self.last_event_name
        new.app_id = self.app_id
        new.device_class = self.device_class
        new.position_s = self.position_s
        new.duration_s = self.duration_s
        new.media_label = self.media_label
        new.playback_rate = self.playback_rate
        new.volume = self.volume
        new.muted = self.muted
        new.fullscreen = self.fullscreen
        new.quality = self.quality
        new.percent_progress = self.percent_progress
        new.media_session_id = self.media_session_id
        older = self.older_totals
        new.older_totals = {k: a.copy() for k, a in older.items()} if older is not None else None
        closed = self.closed_totals
        new.closed_totals = array("d", closed) if closed is not None else None
        current = self.current_totals
        new.current_totals = Acc(current.mask, array("d", current.vals)) if current is not None else None
        new.startup_start_t = self.startup_start_t
        new.startup_from_ready = self.startup_from_ready
        new.first_play_t = self.first_play_t
        new.plays = self.plays
        new.pauses = self.pauses
        new.seeks = self.seeks
        new.buffer_events = self.buffer_events
        new.errors = self.errors
        new.ads_completed = self.ads_completed
        new.last_error = self.last_error
        new.ad = self.ad
        new.ad_break_id = self.ad_break_id
        new.finished_ad_id = self.finished_ad_id
        return new

    def _current_session_key(self) -> str:
        return self.media_session_id if self.media_session_id is not None else ""

    def sessions(self) -> dict[str, Acc]:
        """Every media session's totals, least recently used first (the current one last)."""
        out = dict(self.older_totals) if self.older_totals is not None else {}
        if self.current_totals is not None:
            out[self._current_session_key()] = self.current_totals
        return out

    # -- serialisation --------------------------------------------------------------------------
    def to_json(self) -> list[Any]:
        out = list(_FOLD_GET(self))
        out[_I_OLDER_TOTALS] = [[k, a.mask, a.vals.tolist()] for k, a in self.sessions().items()]
        out[_I_CLOSED_TOTALS] = self.closed_totals.tolist() if self.closed_totals is not None else None
        out[_I_CURRENT_TOTALS] = self._current_session_key() if self.current_totals is not None else None
        return out

    def pack(self) -> tuple[Any, ...]:
        """The fold as plain values (for :mod:`marshal`; :meth:`unpack` reverses it exactly)."""
        vals = list(_FOLD_GET(self))
        older, closed, current = self.older_totals, self.closed_totals, self.current_totals
        if older is not None:
            vals[_I_OLDER_TOTALS] = tuple((k, a.mask, a.vals.tobytes()) for k, a in older.items())
        if closed is not None:
            vals[_I_CLOSED_TOTALS] = closed.tobytes()
        if current is not None:
            vals[_I_CURRENT_TOTALS] = (current.mask, current.vals.tobytes())
        return tuple(vals)

    @classmethod
    def unpack(cls, vals: tuple[Any, ...]) -> Fold:
        f = cls.__new__(cls)
        (
            f.status, f.resume_status, f.in_ad_break, f.resume_is_explicit,
            f.last_event_t, f.last_event_id, f.last_event_name,
            f.app_id, f.device_class, f.position_s, f.duration_s, f.media_label, f.playback_rate, f.volume,
            f.muted, f.fullscreen, f.quality, f.percent_progress,
            f.media_session_id, f.older_totals, f.closed_totals, f.current_totals,
            f.startup_start_t, f.startup_from_ready, f.first_play_t,
            f.plays, f.pauses, f.seeks, f.buffer_events, f.errors, f.ads_completed,
            f.last_error, f.ad, f.ad_break_id, f.finished_ad_id,
        ) = vals  # fmt: skip
        older, closed, current = vals[_I_OLDER_TOTALS], vals[_I_CLOSED_TOTALS], vals[_I_CURRENT_TOTALS]
        if older is not None:
            f.older_totals = {k: Acc(mask, _doubles(b)) for k, mask, b in older}
        if closed is not None:
            f.closed_totals = _doubles(closed)
        if current is not None:
            f.current_totals = Acc(current[0], _doubles(current[1]))
        return f

    @classmethod
    def from_json(cls, data: list[Any]) -> Fold:
        if not isinstance(data, list) or len(data) != len(_FOLD_SLOTS):
            raise ValueError("fold has the wrong shape")
        f = cls.__new__(cls)
        for name, v in zip(_FOLD_SLOTS, data, strict=True):
            setattr(f, name, v)
        sessions = {str(k): Acc(int(mask), array("d", vals)) for k, mask, vals in data[_I_OLDER_TOTALS]}
        closed = data[_I_CLOSED_TOTALS]
        f.closed_totals = array("d", closed) if closed is not None else None
        key = data[_I_CURRENT_TOTALS]
        if key is not None and key != f._current_session_key():
            raise ValueError("the current session is not the fold's")
        f.current_totals = sessions.pop(key) if key is not None else None
        f.older_totals = sessions or None
        f.last_error = tuple(f.last_error) if f.last_error is not None else None  # type: ignore[assignment]
        f.ad = tuple(f.ad) if f.ad is not None else None  # type: ignore[assignment]
        resume = f.resume_status
        if f.status not in sm.STATUSES or (resume is not None and resume not in sm.STATUSES):
            raise ValueError(f"unknown status {f.status!r} / {resume!r}")
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
        if f.device_class not in DEVICE_CLASSES:
            raise ValueError(f"unknown device class {f.device_class!r}")
        for name in _FOLD_SHARED:
            v = getattr(f, name)
            if type(v) is str:
                setattr(f, name, sys.intern(v))
        return f


def _doubles(b: bytes) -> array[float]:
    a = array("d")
    a.frombytes(b)
    return a


def _switch_session(f: Fold, session_id: str) -> None:
    """``session_id`` differs from the fold's media session: a fresh session starts (from ``idle``)."""
    if f.media_session_id is not None:
        f.status, f.resume_status, f.in_ad_break, f.resume_is_explicit = sm.INITIAL
        f.ad = f.ad_break_id = f.finished_ad_id = None
        f.startup_start_t = f.first_play_t = None
        f.startup_from_ready = False
        f.percent_progress = None
    sessions = f.sessions()
    f.media_session_id = session_id
    current = sessions.pop(session_id, None)
    if current is None:
        current = Acc()
        if len(sessions) >= MAX_SESSIONS:  # fold the least recently used session into the closed total
            old_key = next(iter(sessions))
            old = sessions.pop(old_key)
            closed = f.closed_totals if f.closed_totals is not None else array("d", ZEROS)
            for i in range(N_STATS):
                closed[i] += old.vals[i]
            f.closed_totals = closed
    f.older_totals = sessions or None  # (the older ones; the current one is f.current_totals)
    f.current_totals = current


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
    prev_ts = f.last_event_t
    acc = f.current_totals
    # time since the previous event, spent in the status it left us in (fallback totals only)
    if prev_ts is not None and acc is not None:
        slot = _TIME_SLOT.get(status)
        if slot is not None and not (acc.mask >> slot) & 1:
            dt = t - prev_ts
            acc.vals[slot] += dt if dt < MAX_GAP_S else MAX_GAP_S
    f.last_event_t = t
    f.last_event_id = ev[R_EID]
    f.last_event_name = name
    v: Any = ev[R_APP]
    if v:
        f.app_id = v
    v = ev[R_DEVICE]
    if v:
        f.device_class = v

    session_id = ev[R_SID]
    if session_id is not None:
        if session_id != f.media_session_id:
            _switch_session(f, session_id)
            status = f.status
        acc = f.current_totals
    elif acc is None:
        if name not in _MEDIA:
            return None  # a page view / page ping / other event before any media: nothing more
        acc = f.current_totals = Acc()  # the session without an id: key ""
    if name in _MEDIA and f.startup_start_t is None:
        f.startup_start_t = t

    # media player entity (latest non-null wins)
    v = ev[R_POS]
    if v is not None:
        f.position_s = v
    v = ev[R_DUR]
    if v is not None:
        f.duration_s = v
    v = ev[R_LABEL]
    if v is not None:
        f.media_label = v
    v = ev[R_RATE]
    if v is not None:
        f.playback_rate = v
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
        f.status, f.resume_status, f.in_ad_break, f.resume_is_explicit = sm.transition(
            (status, f.resume_status, f.in_ad_break, f.resume_is_explicit), name, ev[R_PAUSED], ev[R_ENDED]
        )
    new = f.status
    # the current ad: shown while watching_ad; an ad event that missed its ad_start sets it
    if new != _WATCHING_AD:
        if f.ad is not None:
            f.ad = None
    else:
        ad_id = ev[R_AD_ID]
        if ad_id is not None and f.ad is None and kind not in _AD_CLEARING and ad_id != f.finished_ad_id:
            f.ad = (ad_id, ev[R_AD_NAME], ev[R_BREAK] or f.ad_break_id)
        elif ev[R_BREAK] is not None and kind not in _AD_CLEARING:
            f.ad_break_id = ev[R_BREAK]
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
        if f.first_play_t is None:
            f.first_play_t = t
    elif kind == _K_PAUSE:
        f.pauses += 1
    elif kind == _K_SEEK_END:
        f.seeks += 1
    elif kind == _K_BUFFER_START:
        f.buffer_events += 1
    elif kind == _K_ERROR:
        f.errors += 1
        data = ev[R_DATA]
        code = _str(data.get("errorCode"))
        name = _str(data.get("errorName"))
        message = _str(data.get("errorDescription"))
        f.last_error = (code or name, message or name)
    elif kind in (_K_AD_COMPLETE, _K_AD_SKIP):
        if kind == _K_AD_COMPLETE:
            f.ads_completed += 1
        ad = f.ad
        if ad is not None and (ev[R_AD_ID] is None or ev[R_AD_ID] == ad[0]):
            f.ad = None
        f.finished_ad_id = ev[R_AD_ID]
    elif kind == _K_AD_START:
        f.ad = (ev[R_AD_ID], ev[R_AD_NAME], ev[R_BREAK] or f.ad_break_id) if ev[R_AD_ID] is not None else None
        f.finished_ad_id = None
    elif kind == _K_BREAK_START:
        f.ad_break_id = ev[R_BREAK]
        f.ad = None
        f.finished_ad_id = None
    elif kind == _K_BREAK_END:
        f.ad_break_id = None
        f.ad = None
    elif kind == _K_READY:
        if f.first_play_t is None and not f.startup_from_ready:
            f.startup_start_t = t
            f.startup_from_ready = True
    elif kind == _K_PERCENT:
        p = _num(ev[R_DATA].get("percentProgress"))
        if p is not None:
            f.percent_progress = p
    elif kind == _K_RATE:
        r = _num(ev[R_DATA].get("newRate"))
        if r is not None:
            f.playback_rate = r
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
