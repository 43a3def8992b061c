"""The in-memory live view: the active viewers, their counts, snapshots, deltas and paging.

Only active viewers are kept (see :func:`is_active`), so memory follows the number of people
watching, not the size of the changes topic. Everything here runs on the asyncio loop's thread.
"""

from __future__ import annotations

import base64
import heapq
import sys
import time
from bisect import bisect_left, bisect_right, insort
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

# One definition of the profile (fields, `active`, the API dict) and of the timestamp format,
# shared with `lvp profiles`: lvp.profile and lvp.enriched.
from lvp.enriched import epoch_of, iso
from lvp.profile import api_profile, is_active

__all__ = ["LiveView", "Subscription", "SubscriptionError"]

ACTIVE_STATUSES: tuple[str, ...] = ("watching", "watching_ad", "buffering", "paused", "idle")
NO_MEDIA = "unknown"
DEFAULT_LIMIT = 200
MAX_LIMIT = 5000
# How long the events counter of a viewer that left the view is remembered (for events/min).
RETIRED_MEMORY_S = 900.0
# A viewer that is not active only because its last_seen is old (status not ended) is kept this
# long as its encoded profile, so that a touch can bring it back: after a restart the compacted
# topic holds a watching viewer's last *profile* message, which may be much older than its
# pings (touches messages are compacted to the last one per partition).
DORMANT_S = 3600.0
DORMANT_SWEEP_S = 60.0
# A viewer who ended is kept this long (at least; swept every DORMANT_SWEEP_S) as its encoded
# profile, for `GET /api/profiles/{id}`: DynamoDB gets the end LVP_STATUS_WRITE_DELAY_S plus up
# to LVP_FLUSH_INTERVAL_S later (more under lag), and until then the API must not answer with
# what came before the end. The service keeps them this long past the status write delay.
ENDED_KEEP_S = 60.0
# Stream windows (one page of rows a group of SSE clients shows): the search text's bound and
# how many titles the counts of a stream frame carry (the REST snapshot carries all of them).
MAX_QUERY = 64
STREAM_MEDIA = 20
# A search window reads a sorted index of the keys its text matches, kept up to date with every
# change (its cost follows its rows and the changes, not the audience: a scan of 15,000 keys took
# ~3 ms, and windows were scanned at every push a change concerned them). At most SEARCH_INDEXES
# texts are indexed (the least recently read dropped first), each dropped SEARCH_IDLE_S after it
# was last read; an index is a list of references to the keys, 8 B per matching viewer.
SEARCH_INDEXES = 32
SEARCH_IDLE_S = 60.0
# The page order: status (this rank), then media title, then viewer id. Touches (position,
# last_seen) never move a row, so a page of 100,000 viewers does not reshuffle every second.
STATUS_RANK: dict[str, int] = {s: i for i, s in enumerate(ACTIVE_STATUSES)}
OTHER_RANK = len(ACTIVE_STATUSES)
# Low-cardinality strings every profile repeats: held once (sys.intern), not once per viewer.
_INTERNED: tuple[str, ...] = (
    "status", "app_id", "media_label", "last_event_name", "device_class", "quality",
)  # fmt: skip


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


SortKey = tuple[int, str, str]  # (status rank, media, viewer id): the stream windows' order


@dataclass(slots=True)
class Entry:
    profile: dict[str, Any]  # API dict with active=True
    last_seen: float
    status: str
    media: str
    key: SortKey
    heap_at: float | None = None  # expiry of this entry's pending heap item


class SubscriptionError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a group of SSE clients shows: the first ``limit`` viewers in page order
    (:data:`STATUS_RANK`, media, viewer id), only ``status`` when set, only viewers whose id or
    media title contains ``q`` (case-insensitive) when set. Clients with equal subscriptions
    share every frame."""

    limit: int = DEFAULT_LIMIT
    status: str | None = None
    q: str | None = None

    @classmethod
    def parse(cls, limit: int, status: str | None, q: str | None) -> Subscription:
        if not 1 <= limit <= MAX_LIMIT:
            raise SubscriptionError(f"limit must be 1..{MAX_LIMIT}")
        if status is not None and status not in STATUS_RANK:
            raise SubscriptionError(f"status must be one of {', '.join(ACTIVE_STATUSES)}")
        if q is not None:
            q = q.strip().lower()
            if len(q) > MAX_QUERY:
                raise SubscriptionError(f"q must be at most {MAX_QUERY} characters")
        return cls(limit, status or None, q or None)

    def matches(self, key: SortKey) -> bool:
        """Whether the viewer of page-order ``key`` belongs to this window's filter."""
        if self.status is not None and key[0] != STATUS_RANK[self.status]:
            return False
        q = self.q
        return q is None or _text_matches(q, key)


def _text_matches(q: str, key: SortKey) -> bool:
    """Whether the viewer id or the media title of ``key`` contains ``q`` (lowercase)."""
    return q in key[2] or q in _lower(key[1])


def _lower(text: str, _cache: dict[str, str] = {}) -> str:  # noqa: B006 - a deliberate cache
    """``text.lower()``, cached: titles repeat across many viewers."""
    low = _cache.get(text)
    if low is None:
        if len(_cache) > 10_000:
            _cache.clear()
        low = _cache[text] = text.lower()
    return low


def _remove_key(keys: list[SortKey], key: SortKey) -> None:
    i = bisect_left(keys, key)
    if i < len(keys) and keys[i] == key:
        del keys[i]


@dataclass(slots=True)
class Page:
    viewers: list[dict[str, Any]]
    next_cursor: str | None


class CursorError(ValueError):
    pass


def encode_cursor(key: SortKey) -> str:
    raw = orjson.dumps(list(key))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> SortKey:
    """A cursor -> the page-order key of the last viewer of the previous page."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        rank, media, viewer_id = orjson.loads(raw)
        if type(rank) is not int or not isinstance(media, str) or not isinstance(viewer_id, str):
            raise TypeError
        return rank, media, viewer_id
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise CursorError("invalid cursor") from None


class LiveView:
    """Active viewers keyed by viewer id, with incremental counts and pending delta sets."""

    def __init__(
        self, timeout_s: float, clock: Callable[[], float] = time.time, ended_keep_s: float = ENDED_KEEP_S
    ) -> None:
        self.timeout_s = timeout_s
        self.ended_keep_s = ended_keep_s
        self.clock = clock
        self._entries: dict[str, Entry] = {}
        self._heap: list[tuple[float, str]] = []
        self._keys: list[SortKey] = []  # every entry's key, sorted (the stream windows' order)
        # search text -> (the keys it matches, sorted; when a window last read it), least recent first
        self._searches: dict[str, tuple[list[SortKey], float]] = {}
        self._upserts: set[str] = set()
        self._removes: set[str] = set()
        self._taken_old_keys: dict[str, SortKey] = {}
        self._touched: set[str] = set()  # touched (position, last_seen...) since the last push
        self.by_status: Counter[str] = Counter()
        self.by_media: Counter[str] = Counter()
        self._retired: dict[str, tuple[int, float]] = {}  # viewer id -> (events, left at)
        self._dormant: dict[str, tuple[float, bytes]] = {}  # viewer id -> (last_seen, profile JSON)
        self._ended: dict[str, tuple[float, bytes]] = {}  # viewer id -> (when it ended here, profile JSON)
        self._dormant_swept = 0.0
        self._version = 0
        self._old_keys: dict[str, SortKey] = {}  # the key before a change, since the last push
        self.ignored = 0

    # --- reading --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, viewer_id: object) -> bool:
        return viewer_id in self._entries

    def get(self, viewer_id: str) -> dict[str, Any] | None:
        entry = self._entries.get(viewer_id)
        return entry.profile if entry else None

    def left_profile(self, viewer_id: str) -> dict[str, Any] | None:
        """The last profile (without ``active``) of a viewer who left the view — ended (kept
        ``ended_keep_s``) or quiet past the timeout (kept DORMANT_S) —; None for any other."""
        kept = self._ended.get(viewer_id) or self._dormant.get(viewer_id)
        return None if kept is None else dict(orjson.loads(kept[1]))

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

    def window(self, sub: Subscription) -> tuple[list[str], int]:
        """The viewer ids ``sub`` shows now, in page order, and how many viewers match it.
        O(limit): a bisect into the sorted keys, or into the search text's index (built by one
        scan when a window first reads it, then kept up to date by every change)."""
        keys = self._keys if sub.q is None else self._search_keys(sub.q)
        lo, hi = 0, len(keys)
        if sub.status is not None:
            rank = STATUS_RANK[sub.status]
            lo = bisect_left(keys, (rank,))
            hi = bisect_left(keys, (rank + 1,), lo)
        return [k[2] for k in keys[lo : min(hi, lo + sub.limit)]], hi - lo

    def _search_keys(self, q: str) -> list[SortKey]:
        """The sorted keys ``q`` matches (see :data:`SEARCH_INDEXES`)."""
        now = self.clock()
        searches = self._searches
        held = searches.pop(q, None)
        keys = held[0] if held is not None else [k for k in self._keys if _text_matches(q, k)]
        for text in [t for t, (_k, read) in searches.items() if now - read > SEARCH_IDLE_S]:
            del searches[text]
        while len(searches) >= SEARCH_INDEXES:
            del searches[next(iter(searches))]
        searches[q] = (keys, now)
        return keys

    def stream_counts(self, counts: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """:meth:`counts` for a stream frame: the top :data:`STREAM_MEDIA` titles only (a frame
        stays small however many titles play) and ``media_titles``, how many there are."""
        counts = self.counts() if counts is None else counts
        by_media = counts["by_media"]
        top = dict(list(by_media.items())[:STREAM_MEDIA]) if len(by_media) > STREAM_MEDIA else by_media
        return {**counts, "by_media": top, "media_titles": len(by_media)}

    def page(self, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> Page:
        """Active viewers in page order (status, media title, viewer id: an order touches do not
        change, so paging through a large audience neither skips nor repeats viewers that only
        pinged); ``cursor`` continues after the previous page. O(limit), never a sort."""
        keys = self._keys
        start = bisect_right(keys, decode_cursor(cursor)) if cursor else 0
        chunk = keys[start : start + limit]
        nxt = encode_cursor(chunk[-1]) if chunk and start + limit < len(keys) else None
        entries = self._entries
        return Page([entries[k[2]].profile for k in chunk], nxt)

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

    # --- writing --------------------------------------------------------------------------
    def apply(self, viewer_id: str, raw: Mapping[str, Any] | None, now: float | None = None) -> int:
        """Apply one change message (``raw`` None = tombstone). Returns the increase of the
        viewer's ``events`` counter this change represents (for events-per-minute)."""
        now = self.clock() if now is None else now
        old = self._entries.get(viewer_id)
        self._dormant.pop(viewer_id, None)
        self._ended.pop(viewer_id, None)
        if raw is None:
            self._retired.pop(viewer_id, None)
            if old is not None:
                self._drop(viewer_id, old, now, retire=False)
            return 0
        profile = api_profile(raw, viewer_id, active=True)  # kept only while it is true
        for name in _INTERNED:
            value = profile[name]
            if type(value) is str:
                profile[name] = sys.intern(value)
        last_seen = epoch_of(profile["last_seen"])
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
            self._keep_dormant(viewer_id, profile, last_seen, now)
            return increase
        status = str(profile["status"] or "idle")
        media = str(profile["media_label"] or NO_MEDIA)
        key = (STATUS_RANK.get(status, OTHER_RANK), media, viewer_id)
        entry = Entry(profile, last_seen, status, media, key)
        if old is not None:
            self._uncount(old)
            entry.heap_at = old.heap_at
            if old.key != key:
                self._unkey(old.key)
                self._add_key(key)
                self._old_keys.setdefault(viewer_id, old.key)
        else:
            self._add_key(key)
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
        first_seen = epoch_of(profile["first_seen"])
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
            self._keep_dormant(viewer_id, entry.profile, entry.last_seen, now)
            gone += 1
        if now - self._dormant_swept >= DORMANT_SWEEP_S:
            self._dormant_swept = now
            cutoff = now - DORMANT_S
            self._dormant = {k: v for k, v in self._dormant.items() if v[0] >= cutoff}
            cutoff = now - self.ended_keep_s
            self._ended = {k: v for k, v in self._ended.items() if v[0] >= cutoff}
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
        self._unkey(entry.key)
        self._old_keys.setdefault(viewer_id, entry.key)
        self._touched.discard(viewer_id)
        if retire and events is not None:
            self._retired[viewer_id] = (events, now)
        self._upserts.discard(viewer_id)
        self._removes.add(viewer_id)
        self._changed()

    def touch(self, patches: Mapping[str, Mapping[str, Any]], now: float | None = None) -> int:
        """Apply a touches message (viewer id -> touch fields, see :mod:`lvp.changes`) as patches
        on the profiles held. A viewer not held (or no longer active) is ignored, and so is a
        patch older than the profile held (fewer events). Returns the events increase.

        A touch changes neither status nor title: no count, no row order moves; the viewer's
        expiry moves later lazily (the heap item is re-pushed when it comes due)."""
        entries = self._entries
        touched = self._touched
        increase = 0
        applied = 0
        for viewer_id, patch in patches.items():
            entry = entries.get(viewer_id)
            if entry is None:
                increase += self._revive(viewer_id, patch, now)
                continue
            seen = epoch_of(patch.get("last_seen"))
            if seen is None:
                self.ignored += 1
                continue
            profile = entry.profile
            events = _as_int(patch.get("events"))
            before = _as_int(profile["events"])
            if events is not None and before is not None:
                if events < before:
                    self.ignored += 1
                    continue
                increase += events - before
            elif events is not None:
                increase += 1
            profile.update(patch)
            if seen > entry.last_seen:
                entry.last_seen = seen
            touched.add(viewer_id)
            applied += 1
        if applied:
            self._version += 1
        return increase

    def _revive(self, viewer_id: str, patch: Mapping[str, Any], now: float | None) -> int:
        """A touch of a dormant viewer: its kept profile, patched, applied (active again when
        the touch is recent). A viewer never held is ignored."""
        kept = self._dormant.get(viewer_id)
        if kept is None:
            return 0
        profile = orjson.loads(kept[1])
        events, before = _as_int(patch.get("events")), _as_int(profile.get("events"))
        if events is not None and before is not None and events < before:
            self.ignored += 1
            return 0
        profile.update(patch)
        return self.apply(viewer_id, profile, now)

    def _keep_dormant(self, viewer_id: str, profile: Mapping[str, Any], last_seen: float, now: float) -> None:
        """Keep the profile of a viewer leaving the view: a quiet one for a touch that may bring
        it back (and for the API), an ended one for the API only (see :meth:`left_profile`)."""
        ended = profile.get("status") == "ended"
        if ended or now - last_seen <= DORMANT_S:
            body = orjson.dumps({k: v for k, v in profile.items() if k != "active"})
            if ended:
                self._ended[viewer_id] = (now, body)
            else:
                self._dormant[viewer_id] = (last_seen, body)

    @property
    def dormant(self) -> int:
        """Viewers kept (encoded) because a touch may bring them back."""
        return len(self._dormant)

    def _add_key(self, key: SortKey) -> None:
        insort(self._keys, key)
        for q, (keys, _read) in self._searches.items():
            if _text_matches(q, key):
                insort(keys, key)

    def _unkey(self, key: SortKey) -> None:
        _remove_key(self._keys, key)
        for q, (keys, _read) in self._searches.items():
            if _text_matches(q, key):
                _remove_key(keys, key)

    def _uncount(self, entry: Entry) -> None:
        for counter, key in ((self.by_status, entry.status), (self.by_media, entry.media)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]

    def _changed(self) -> None:
        self._version += 1

    # --- deltas ---------------------------------------------------------------------------
    def has_changes(self) -> bool:
        return bool(self._upserts or self._removes or self._touched)

    def take_changes(self) -> tuple[set[str], set[str], set[str]]:
        """``(upserted, touched, removed)`` viewer ids since the last call (and forget them).
        Until the next call, :meth:`affects` can tell which windows they concern."""
        out = (self._upserts, self._touched - self._upserts, self._removes)
        self._upserts, self._touched, self._removes = set(), set(), set()
        self._taken_old_keys, self._old_keys = self._old_keys, {}
        return out

    def affects(self, sub: Subscription, viewer_ids: Iterable[str]) -> bool:
        """Whether a change of these viewers (upserted or removed, as last taken) can change the
        window or the total of ``sub``: their key before or after the change matches it."""
        entries = self._entries
        old_keys = self._taken_old_keys
        for v in viewer_ids:
            entry = entries.get(v)
            if entry is not None and sub.matches(entry.key):
                return True
            old = old_keys.get(v)
            if old is not None and sub.matches(old):
                return True
        return False

    def take_delta(self, seq: int) -> dict[str, Any]:
        """Every change since the last delta (and forget them), touched viewers as upserts:
        the whole view's delta (tests, small views); the stream sends per-window frames."""
        self._upserts |= self._touched
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
        self._touched = set()
        return delta
