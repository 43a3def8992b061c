"""The in-memory live view: the active viewers, their counts, snapshots, deltas and paging.

Only active viewers are kept (see :func:`is_active`), so memory follows the number of people
watching, not the size of the changes topic. Everything here runs on the asyncio loop's thread.
"""

from __future__ import annotations

import base64
import heapq
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

# One definition of the profile fields, of `active` and of the timestamp format: the profiles
# package's. `is_active` and `iso` are re-exported from here for the rest of the viewer.
from profiles.profile import PROFILE_FIELDS, is_active, iso, parse_iso

__all__ = ["API_FIELDS", "LiveView", "is_active", "iso", "parse_ts"]

# The profile as the API shows it (docs/contracts.md), without the derived ``active``.
API_FIELDS: tuple[str, ...] = tuple(f for f in PROFILE_FIELDS if f != "active")
ACTIVE_STATUSES: tuple[str, ...] = ("watching", "watching_ad", "buffering", "paused", "idle")
NO_MEDIA = "unknown"
DEFAULT_LIMIT = 200
MAX_LIMIT = 5000
# How long the events counter of a viewer that left the view is remembered (for events/min).
RETIRED_MEMORY_S = 900.0


def parse_ts(value: object) -> float | None:
    """ISO-8601 UTC timestamp -> epoch seconds (the same parser as :func:`is_active`); None for
    anything else."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        return None


def api_profile(
    raw: Mapping[str, Any], viewer_id: str | None = None, active: bool | None = None
) -> dict[str, Any]:
    """Only the API fields of ``raw`` (absent -> None), in contract order; ``active`` included
    when given. Anything else in ``raw`` (engine state, TTLs, index keys) is left out."""
    out: dict[str, Any] = {}
    for name in PROFILE_FIELDS:
        if name == "active":
            if active is not None:
                out["active"] = active
        else:
            out[name] = raw.get(name)
    if viewer_id is not None:
        out["viewer_id"] = viewer_id
    return out


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(slots=True)
class Entry:
    profile: dict[str, Any]  # API dict with active=True
    last_seen: float
    status: str
    media: str
    heap_at: float | None = None  # expiry of this entry's pending heap item


@dataclass(slots=True)
class Page:
    viewers: list[dict[str, Any]]
    next_cursor: str | None


class CursorError(ValueError):
    pass


def encode_cursor(last_seen: float, viewer_id: str) -> str:
    raw = orjson.dumps([last_seen, viewer_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        last_seen, viewer_id = orjson.loads(raw)
        if not isinstance(last_seen, int | float) or not isinstance(viewer_id, str):
            raise TypeError
        return float(last_seen), viewer_id
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise CursorError("invalid cursor") from None


class LiveView:
    """Active viewers keyed by viewer id, with incremental counts and pending delta sets."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.time) -> None:
        self.timeout_s = timeout_s
        self.clock = clock
        self._entries: dict[str, Entry] = {}
        self._heap: list[tuple[float, str]] = []
        self._upserts: set[str] = set()
        self._removes: set[str] = set()
        self.by_status: Counter[str] = Counter()
        self.by_media: Counter[str] = Counter()
        self._retired: dict[str, tuple[int, float]] = {}  # viewer id -> (events, left at)
        self._version = 0
        self._order: list[Entry] | None = None
        self._order_keys: list[tuple[float, str]] = []
        self.ignored = 0

    # --- reading --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, viewer_id: object) -> bool:
        return viewer_id in self._entries

    def get(self, viewer_id: str) -> dict[str, Any] | None:
        entry = self._entries.get(viewer_id)
        return entry.profile if entry else None

    def last_seen_of(self, viewer_id: str) -> float | None:
        entry = self._entries.get(viewer_id)
        return entry.last_seen if entry else None

    def profiles(self) -> Iterator[dict[str, Any]]:
        for entry in self._entries.values():
            yield entry.profile

    @property
    def version(self) -> int:
        return self._version

    def counts(self) -> dict[str, Any]:
        by_status = {s: self.by_status.get(s, 0) for s in ACTIVE_STATUSES}
        for status, n in self.by_status.items():
            if status not in by_status and n:
                by_status[status] = n
        by_media = dict(sorted(((m, n) for m, n in self.by_media.items() if n), key=lambda x: (-x[1], x[0])))
        return {"active": len(self._entries), "by_status": by_status, "by_media": by_media}

    def page(self, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> Page:
        """The most recently seen active viewers, newest first; ``cursor`` continues a page."""
        order = self._sorted()
        start = 0
        if cursor:
            last_seen, viewer_id = decode_cursor(cursor)
            start = bisect_right(self._order_keys, (-last_seen, viewer_id))
        chunk = order[start : start + limit]
        nxt = None
        if start + limit < len(order) and chunk:
            nxt = encode_cursor(chunk[-1].last_seen, chunk[-1].profile["viewer_id"])
        return Page([e.profile for e in chunk], nxt)

    def snapshot(
        self, seq: int | None = None, limit: int = DEFAULT_LIMIT, cursor: str | None = None
    ) -> dict[str, Any]:
        page = self.page(limit, cursor)
        snap: dict[str, Any] = {"generated_at": iso(self.clock())}
        if seq is not None:
            snap["seq"] = seq
        snap.update(self.counts())
        snap["viewers"] = page.viewers
        snap["next_cursor"] = page.next_cursor
        return snap

    def _sorted(self) -> list[Entry]:
        if self._order is None:
            order = sorted(self._entries.values(), key=lambda e: (-e.last_seen, e.profile["viewer_id"]))
            self._order = order
            self._order_keys = [(-e.last_seen, e.profile["viewer_id"]) for e in order]
        return self._order

    # --- writing --------------------------------------------------------------------------
    def apply(self, viewer_id: str, raw: Mapping[str, Any] | None, now: float | None = None) -> int:
        """Apply one change message (``raw`` None = tombstone). Returns the increase of the
        viewer's ``events`` counter this change represents (for events-per-minute)."""
        now = self.clock() if now is None else now
        old = self._entries.get(viewer_id)
        if raw is None:
            self._retired.pop(viewer_id, None)
            if old is not None:
                self._drop(viewer_id, old, now, retire=False)
            return 0
        profile = api_profile(raw, viewer_id, active=True)  # kept only while it is true
        last_seen = parse_ts(profile["last_seen"])
        if last_seen is None:
            self.ignored += 1
            return 0
        events = _as_int(profile["events"])
        if old is not None:
            old_events = _as_int(old.profile["events"])
            if events is not None and old_events is not None and events < old_events:
                self.ignored += 1  # an older version of what we already show
                return 0
        increase = self._increase(viewer_id, old, events, profile, now)
        if not is_active(profile, now, self.timeout_s):
            if old is not None:
                self._drop(viewer_id, old, now, retire=True, events=events)
            elif events is not None:
                self._retired[viewer_id] = (events, now)
            return increase
        status = str(profile["status"] or "idle")
        media = str(profile["media_label"] or NO_MEDIA)
        entry = Entry(profile, last_seen, status, media)
        if old is not None:
            self._uncount(old)
            entry.heap_at = old.heap_at
        self._retired.pop(viewer_id, None)
        self._entries[viewer_id] = entry
        self.by_status[status] += 1
        self.by_media[media] += 1
        expiry = last_seen + self.timeout_s
        if entry.heap_at is None or expiry < entry.heap_at:
            heapq.heappush(self._heap, (expiry, viewer_id))
            entry.heap_at = expiry
        self._upserts.add(viewer_id)
        self._removes.discard(viewer_id)
        self._changed()
        return increase

    def _increase(
        self, viewer_id: str, old: Entry | None, events: int | None, profile: dict[str, Any], now: float
    ) -> int:
        if events is None:
            return 1
        if old is not None:
            before = _as_int(old.profile["events"])
            return max(0, events - before) if before is not None else 1
        retired = self._retired.get(viewer_id)
        if retired is not None:
            return max(0, events - retired[0])
        first_seen = parse_ts(profile["first_seen"])
        if first_seen is not None and now - first_seen <= RETIRED_MEMORY_S:
            return events  # a new viewer: all its events are recent
        return 1

    def expire(self, now: float | None = None) -> int:
        """Remove viewers whose last_seen is now too old. Returns how many left."""
        now = self.clock() if now is None else now
        gone = 0
        heap = self._heap
        while heap and heap[0][0] < now:
            expiry, viewer_id = heapq.heappop(heap)
            entry = self._entries.get(viewer_id)
            if entry is None or entry.heap_at != expiry:
                continue  # stale heap item
            entry.heap_at = None
            if is_active(entry.profile, now, self.timeout_s):
                nxt = entry.last_seen + self.timeout_s
                if nxt <= now:
                    nxt = now + 1.0
                heapq.heappush(heap, (nxt, viewer_id))
                entry.heap_at = nxt
                continue
            self._drop(viewer_id, entry, now, retire=True, events=_as_int(entry.profile["events"]))
            gone += 1
        if len(self._retired) > 1000 and self._retired:
            cutoff = now - RETIRED_MEMORY_S
            self._retired = {k: v for k, v in self._retired.items() if v[1] >= cutoff}
        return gone

    def next_expiry(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def _drop(
        self, viewer_id: str, entry: Entry, now: float, *, retire: bool, events: int | None = None
    ) -> None:
        del self._entries[viewer_id]
        self._uncount(entry)
        if retire and events is not None:
            self._retired[viewer_id] = (events, now)
        self._upserts.discard(viewer_id)
        self._removes.add(viewer_id)
        self._changed()

    def _uncount(self, entry: Entry) -> None:
        for counter, key in ((self.by_status, entry.status), (self.by_media, entry.media)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]

    def _changed(self) -> None:
        self._version += 1
        self._order = None

    # --- deltas ---------------------------------------------------------------------------
    def has_changes(self) -> bool:
        return bool(self._upserts or self._removes)

    def take_delta(self, seq: int) -> dict[str, Any]:
        """The changes since the last delta (and forget them)."""
        upserts = [self._entries[v].profile for v in self._upserts if v in self._entries]
        delta = {
            "seq": seq,
            "generated_at": iso(self.clock()),
            "counts": self.counts(),
            "upsert": upserts,
            "remove": sorted(self._removes),
        }
        self._upserts = set()
        self._removes = set()
        return delta
