"""The in-memory live view: which viewers are active, counts, expiry, paging and deltas."""

from __future__ import annotations

import random

import pytest
from support.viewer import make_profile

from lvp.enriched import iso
from lvp.profile import STORED_FIELDS, is_active
from viewer.live import (
    ENDED_KEEP_S,
    SEARCH_IDLE_S,
    SEARCH_INDEXES,
    STATUS_RANK,
    CursorError,
    LiveView,
    Subscription,
    SubscriptionError,
    decode_cursor,
)

T0 = 1_700_000_000.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def prof(vid: str, status: str = "watching", seen: float = T0, **kw: object) -> dict[str, object]:
    return make_profile(vid, status, last_seen=iso(seen), **kw)


def test_active_rule() -> None:
    p = prof("v", "watching", T0)
    assert is_active(p, T0 + 75, 75)
    assert not is_active(p, T0 + 75.01, 75)
    assert not is_active(prof("v", "ended", T0), T0, 75)
    assert not is_active({**p, "last_seen": None}, T0, 75)


def test_apply_counts_and_tombstones() -> None:
    clock = Clock()
    view = LiveView(75, clock)
    view.apply("a", prof("a", "watching", media_label="M1"))
    view.apply("b", prof("b", "paused", media_label="M1"))
    view.apply("c", prof("c", "buffering", media_label=None))
    view.apply("d", prof("d", "ended"))  # not active: never shown
    view.apply("e", prof("e", seen=T0 - 100))  # too old
    counts = view.counts()
    assert counts["active"] == 3
    assert counts["by_status"] == {"watching": 1, "watching_ad": 0, "buffering": 1, "paused": 1, "idle": 0}
    assert counts["by_media"] == {"M1": 2, "unknown": 1}
    view.apply("a", prof("a", "watching_ad", media_label="M2", events=6))
    assert view.counts()["by_status"]["watching_ad"] == 1 and view.counts()["by_media"]["M2"] == 1
    view.apply("b", None)  # erased
    view.apply("c", prof("c", "ended", events=9))  # finished
    counts = view.counts()
    assert counts["active"] == 1 and counts["by_media"] == {"M2": 1}
    assert "b" not in view and "c" not in view


def test_only_api_fields_and_the_key_wins() -> None:
    view = LiveView(75, Clock())
    raw = {**prof("from-value"), "state": "{secret engine state}", "ttl": 1, "active_shard": "3"}
    view.apply("from-key", raw)
    p = view.get("from-key")
    assert p is not None
    assert set(p) == {*STORED_FIELDS, "active"} and p["viewer_id"] == "from-key" and p["active"] is True


def test_stale_versions_and_unusable_profiles_are_ignored() -> None:
    view = LiveView(75, Clock())
    view.apply("a", prof("a", "paused", events=10))
    view.apply("a", prof("a", "watching", events=9))  # older than what we show
    assert view.get("a")["status"] == "paused"  # type: ignore[index]
    view.apply("z", {**prof("z"), "last_seen": "not a time"})
    assert "z" not in view and view.ignored == 2


def test_viewers_time_out_without_a_new_message() -> None:
    clock = Clock()
    view = LiveView(75, clock)
    view.apply("a", prof("a", seen=T0))
    view.apply("b", prof("b", seen=T0 + 30))
    view.take_delta(1)
    clock.t = T0 + 60
    view.apply("a", prof("a", seen=T0 + 60, events=6))  # refreshed: must survive its first expiry
    view.take_delta(2)
    clock.t = T0 + 76
    assert view.expire() == 0 and len(view) == 2
    clock.t = T0 + 106
    assert view.expire() == 1 and "b" not in view
    delta = view.take_delta(3)
    assert delta["remove"] == ["b"] and delta["upsert"] == [] and delta["counts"]["active"] == 1
    clock.t = T0 + 136
    assert view.expire() == 1 and len(view) == 0
    assert view.next_expiry() is None


def test_deltas_collect_changes_between_pushes() -> None:
    clock = Clock()
    view = LiveView(75, clock)
    assert not view.has_changes()
    view.apply("a", prof("a"))
    view.apply("b", prof("b"))
    view.apply("b", prof("b", "paused", events=6))
    d1 = view.take_delta(10)
    assert d1["seq"] == 10
    assert sorted(p["viewer_id"] for p in d1["upsert"]) == ["a", "b"]
    assert [p["status"] for p in d1["upsert"] if p["viewer_id"] == "b"] == ["paused"]
    assert not view.has_changes()
    view.apply("a", None)
    view.apply("c", prof("c"))
    view.apply("c", None)  # came and went between two pushes
    d2 = view.take_delta(11)
    assert d2["upsert"] == [] and d2["remove"] == ["a", "c"]
    assert d2["counts"]["active"] == 1


def test_paging_in_page_order_with_cursor() -> None:
    """Pages follow the page order (status, title, id), which touches do not change: paging a
    large audience neither skips nor repeats a viewer that pinged in between."""
    clock = Clock(T0 + 100)
    view = LiveView(75, clock)
    for i in range(25):
        status = ("watching", "paused")[i % 2]
        view.apply(f"v{i:02d}", prof(f"v{i:02d}", status, seen=T0 + 30 + (i % 10), media_label=f"M{i % 3}"))
    pages, cursor = [], None
    while True:
        page = view.page(limit=7, cursor=cursor)
        pages.append([p["viewer_id"] for p in page.viewers])
        cursor = page.next_cursor
        if cursor is None:
            break
        view.touch({pages[-1][0]: {"last_seen": iso(T0 + 99), "events": 9}})  # moves nothing
    flat = [v for page in pages for v in page]
    assert len(flat) == 25 == len(set(flat))
    order = [(int(v[1:]) % 2, f"M{int(v[1:]) % 3}", v) for v in flat]
    assert order == sorted(order)
    assert [len(p) for p in pages] == [7, 7, 7, 4]
    snap = view.snapshot(seq=5, limit=3)
    assert snap["seq"] == 5 and snap["active"] == 25 and len(snap["viewers"]) == 3 and snap["next_cursor"]
    for bad in ("not-a-cursor", "WzEsMl0"):  # not base64 JSON; [1, 2]
        with pytest.raises(CursorError):
            decode_cursor(bad)


def test_events_increase_for_events_per_minute() -> None:
    clock = Clock()
    view = LiveView(75, clock)
    # a brand-new viewer: all its events are recent
    assert view.apply("a", prof("a", events=3, first_seen=iso(T0 - 5))) == 3
    assert view.apply("a", prof("a", events=8, first_seen=iso(T0 - 5))) == 5
    # a returning viewer we have never seen: only the change we know of
    assert view.apply("b", prof("b", events=500, first_seen=iso(T0 - 86400))) == 1
    # a viewer that timed out and comes back: the increase since we last saw it
    clock.t = T0 + 200
    view.expire()
    assert "a" not in view
    assert view.apply("a", prof("a", seen=T0 + 200, events=12, first_seen=iso(T0 - 5))) == 4


def touch_of(seen: float, **kw: object) -> dict[str, object]:
    return {"position_s": 100.0, "last_seen": iso(seen), "events": 10, "last_event_name": "ping", **kw}


def test_touches_patch_the_profiles_held() -> None:
    clock = Clock()
    view = LiveView(75, clock)
    view.apply("a", prof("a", events=5))
    view.apply("b", prof("b", events=5))
    view.take_changes()
    clock.t = T0 + 60
    increase = view.touch(
        {"a": touch_of(T0 + 59), "nobody": touch_of(T0 + 59), "b": touch_of(T0 + 59, events=4)}
    )
    assert increase == 5  # a: 5 -> 10; an unknown viewer and a stale patch (b) count nothing
    a = view.get("a")
    assert a is not None and a["position_s"] == 100.0 and a["last_event_name"] == "ping"
    assert a["status"] == "watching" and a["active"] is True  # the rest of the profile is kept
    assert "nobody" not in view and view.get("b")["position_s"] == 42.5  # type: ignore[index]
    upserted, touched, removed = view.take_changes()
    assert (upserted, touched, removed) == (set(), {"a"}, set())
    # the touch keeps the viewer active past the expiry of its profile message
    clock.t = T0 + 100
    assert view.expire() == 1 and "a" in view and "b" not in view
    clock.t = T0 + 135
    assert view.expire() == 1 and len(view) == 0


def test_windows_in_page_order_with_status_and_search() -> None:
    clock = Clock()
    view = LiveView(75, clock)
    for i in range(30):
        status = ("watching", "paused", "buffering")[i % 3]
        view.apply(f"v{i:02d}", prof(f"v{i:02d}", status, media_label=f"Film {i % 2}"))
    ids, total = view.window(Subscription(limit=4))
    assert total == 30 and ids == ["v00", "v06", "v12", "v18"]  # watching, Film 0 first
    ids, total = view.window(Subscription(limit=3, status="buffering"))
    assert total == 10 and ids == ["v02", "v08", "v14"]
    ids, total = view.window(Subscription.parse(50, None, " FILM 1 "))
    assert total == 15 and ids[:2] == ["v03", "v09"] and len(ids) == 15
    ids, total = view.window(Subscription(limit=5, status="paused", q="v1"))
    assert total == 4 and ids == ["v10", "v16", "v13", "v19"]  # Film 0 before Film 1
    # a status change moves the row; a touch does not
    view.apply("v00", prof("v00", "paused", media_label="Film 0", events=6))
    assert view.window(Subscription(limit=1))[0] == ["v06"]
    view.touch({"v06": touch_of(T0 + 1)})
    assert view.window(Subscription(limit=1))[0] == ["v06"]
    for bad in ((0, None, None), (10, "ended", None), (10, None, "x" * 65)):
        with pytest.raises(SubscriptionError):
            Subscription.parse(*bad)
    counts = view.stream_counts()
    assert counts["media_titles"] == 2 and counts["active"] == 30


def _scan(view: LiveView, sub: Subscription) -> tuple[list[str], int]:
    """The window of ``sub`` by a scan of every active viewer in page order (the reference)."""
    rows = sorted(
        (STATUS_RANK[p["status"]], p["media_label"] or "unknown", p["viewer_id"]) for p in view.profiles()
    )
    found = [k[2] for k in rows if sub.matches(k)]
    return found[: sub.limit], len(found)


def test_search_windows_follow_every_change_as_a_scan_would() -> None:
    """Search windows read an index kept up to date by each change (new viewers, status and
    title changes, endings, erasures, expiry): after every step each window equals a scan of
    the view, whatever the status filter, including texts indexed before the changes."""
    rng = random.Random(11)
    clock = Clock()
    view = LiveView(75, clock)
    subs = [
        Subscription.parse(5, None, "a"),
        Subscription.parse(50, None, "film 1"),
        Subscription.parse(3, "paused", "b"),
        Subscription.parse(4, "watching", "film"),
        Subscription.parse(10, None, "zz"),  # matches nothing
    ]
    for sub in subs[:3]:
        view.window(sub)  # indexed before the changes; the others only after them
    statuses = ("watching", "paused", "buffering", "watching_ad", "idle", "ended")
    events: dict[str, int] = {}
    for step in range(600):
        vid = f"{rng.randrange(80):02d}{rng.choice('abcdef')}"
        events[vid] = events.get(vid, 0) + 1
        roll = rng.random()
        if roll < 0.05:
            view.apply(vid, None)
        else:
            title = rng.choice(["Film 1", "Film 2", "News", None])
            seen = clock.t - (200 if roll < 0.1 else 0)  # now and then too old: not active
            view.apply(vid, prof(vid, rng.choice(statuses), seen, media_label=title, events=events[vid]))
        if step % 50 == 49:
            clock.t += 40
            view.expire()
        for sub in subs if step % 7 == 0 else subs[:3]:
            assert view.window(sub) == _scan(view, sub), (step, sub.q, sub.status)
    assert view.window(subs[1])[1] > 0 and view.window(subs[4]) == ([], 0)


def test_search_indexes_are_bounded_and_dropped_when_unread() -> None:
    clock = Clock()
    view = LiveView(75, clock)
    for i in range(40):
        view.apply(f"v{i:02d}", prof(f"v{i:02d}", media_label=f"Film {i % 4}"))
    texts = [f"v{i:02d}" for i in range(SEARCH_INDEXES + 5)]
    for q in texts:
        assert view.window(Subscription.parse(10, None, q)) == _scan(view, Subscription.parse(10, None, q))
    assert len(view._searches) == SEARCH_INDEXES and texts[0] not in view._searches  # least recent out
    clock.t += SEARCH_IDLE_S + 1
    sub = Subscription.parse(10, None, "film 2")
    view.apply("v99", prof("v99", seen=clock.t, media_label="Film 2"))
    assert view.window(sub) == _scan(view, sub) and list(view._searches) == ["film 2"]  # idle ones gone
    # a text dropped and read again is rebuilt from the view as it is now
    view.apply("v02", None)
    assert view.window(Subscription.parse(10, None, texts[2])) == ([], 0)


def test_a_touch_brings_back_a_viewer_whose_last_profile_is_old() -> None:
    """After a restart the compacted topic holds a watching viewer's last profile message, which
    may be older than the active timeout; its next touch must show it again."""
    clock = Clock(T0 + 600)
    view = LiveView(75, clock)
    view.apply("w", prof("w", seen=T0, events=5))  # its last significant change: 10 min ago
    view.apply("e", prof("e", "ended", seen=T0 + 590, events=5))
    view.apply("x", prof("x", seen=T0, events=5))
    view.apply("x", None)  # erased
    assert len(view) == 0 and view.dormant == 1
    assert view.touch({"w": touch_of(T0 + 599), "e": touch_of(T0 + 599), "x": touch_of(T0 + 599)}) == 5
    w = view.get("w")
    assert w is not None and w["position_s"] == 100.0 and w["status"] == "watching" and w["events"] == 10
    assert "e" not in view and "x" not in view and len(view) == 1
    # it times out again without pings, and comes back with the next one
    clock.t = T0 + 700
    assert view.expire() == 1 and view.dormant == 1
    view.touch({"w": touch_of(T0 + 699, events=11)})
    assert "w" in view and view.take_changes()[0] == {"w"}


def test_ended_viewers_are_kept_as_long_as_asked() -> None:
    """The service keeps an ended viewer ENDED_KEEP_S past the status write delay (DynamoDB gets
    the end only after it)."""
    clock = Clock(T0)
    view = LiveView(75, clock, ended_keep_s=ENDED_KEEP_S + 30)
    view.apply("e", prof("e", "ended", seen=T0, events=6))
    clock.t = T0 + ENDED_KEEP_S + 20  # past the default keep, inside this one: kept
    view.expire()
    assert view.left_profile("e") is not None
    clock.t = T0 + ENDED_KEEP_S + 100  # past it, at the next sweep
    view.expire()
    assert view.left_profile("e") is None


def test_the_service_keeps_ended_viewers_past_the_status_write_delay() -> None:
    from lvp.config import Settings
    from viewer.metrics import ViewerMetrics
    from viewer.service import LiveService

    for delay in (0.0, 45.0):
        svc = LiveService(Settings.from_env({}, status_write_delay_s=delay), ViewerMetrics())
        assert svc.view.ended_keep_s == ENDED_KEEP_S + delay


def test_viewers_who_left_are_kept_for_the_api() -> None:
    """An ended viewer's last profile is kept ENDED_KEEP_S (for the API: DynamoDB gets the end a
    flush later), a quiet one's DORMANT_S; an erasure forgets both at once; neither comes back
    on the page by being kept."""
    clock = Clock(T0)
    view = LiveView(75, clock)
    view.apply("e", prof("e", "watching", seen=T0 - 5, events=5))
    view.apply("e", prof("e", "ended", seen=T0, events=6))
    view.apply("q", prof("q", "paused", seen=T0, events=3))
    view.apply("x", prof("x", "ended", seen=T0, events=2))
    view.apply("x", None)  # erased after its end
    assert "e" not in view and len(view) == 1
    ended = view.left_profile("e")
    assert ended is not None and ended["status"] == "ended" and ended["events"] == 6 and "active" not in ended
    assert view.left_profile("q") is None  # still active: not a viewer who left
    assert view.left_profile("x") is None and view.left_profile("never") is None
    clock.t = T0 + 50  # a sweep: e ended 50 s ago, kept
    assert view.expire() == 0 and view.left_profile("e") is not None
    clock.t = T0 + 80  # q's last_seen is past the timeout (no sweep due: one a DORMANT_SWEEP_S)
    assert view.expire() == 1 and len(view) == 0
    quiet = view.left_profile("q")
    assert quiet is not None and quiet["status"] == "paused" and quiet["events"] == 3
    assert view.left_profile("e") is not None
    clock.t = T0 + 130  # past ENDED_KEEP_S, at the next sweep
    view.expire()
    assert view.left_profile("e") is None
    assert view.left_profile("q") is not None  # quiet viewers are kept longer (a touch revives them)
    # a later version replaces the kept one; an erasure forgets a quiet viewer too
    view.apply("q", prof("q", "ended", seen=T0 + 100, events=4))
    kept = view.left_profile("q")
    assert kept is not None and kept["status"] == "ended" and kept["events"] == 4 and view.dormant == 0
    view.apply("q", None)
    assert view.left_profile("q") is None
