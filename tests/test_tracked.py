"""profiles/tracked.py: every per-viewer collection of the consumer, and the one way out."""

from __future__ import annotations

from typing import Any

from profiles.dirty import DirtyLedger
from profiles.engine import ViewerState
from profiles.tracked import TrackedViewers

COLLECTIONS = (
    "states", "partition", "urgent", "pending_hist", "changed", "pub_sig", "touch_pending", "touched",
    "touched_prev", "unfrozen", "flushed", "loading", "to_load", "unreadable", "status_due",
)  # fmt: skip


def holds(t: TrackedViewers, vid: str) -> list[str]:
    """The collections that still know ``vid``."""
    out = [name for name in COLLECTIONS if vid in getattr(t, name)]
    out += ["pending_hist"] * any(k[0] == vid for k in t.pending_hist)
    return out + ["dirty"] * (vid in t.dirty)


def everywhere(t: TrackedViewers, vid: str, p: int) -> None:
    t.states[vid] = ViewerState.new(vid)
    t.partition[vid] = p
    t.mark_dirty(vid, p, 10, 0.0, urgent=True)
    t.pending_hist[(vid, "1#e")] = None
    for name in ("changed", "touched", "touched_prev", "unfrozen", "flushed", "to_load"):
        getattr(t, name).add(vid)
    t.pub_sig[vid] = 1
    t.touch_pending[vid] = [vid]
    queued: list[Any] = [(p, 11, None), (p, 12, None)]
    t.loading[vid] = queued
    t.waiting += len(queued)
    t.unreadable[vid] = p
    t.status_due[vid] = 5.0


def tracked() -> TrackedViewers:
    return TrackedViewers(DirtyLedger(300.0, 75.0, 0.0))


def test_remove_clears_every_collection_and_nothing_of_the_others() -> None:
    t = tracked()
    everywhere(t, "a", 0)
    everywhere(t, "b", 0)
    assert len(holds(t, "a")) == len(COLLECTIONS) + 1
    t.remove("a")
    assert holds(t, "a") == []
    assert len(holds(t, "b")) == len(COLLECTIONS) + 1
    assert t.waiting == 2
    assert t.dirty.earliest() == {0: 10}


def test_remove_many_returns_how_many_had_a_state() -> None:
    t = tracked()
    everywhere(t, "a", 0)
    t.loading["w"] = [(1, 5, None)]
    t.waiting += 1
    assert t.remove_many(["a", "w", "unknown"]) == 1
    assert t.waiting == 0 and not t.loading and not t.states and not t.dirty


def test_the_viewers_of_partitions_held_or_waiting() -> None:
    t = tracked()
    t.states["a"] = ViewerState.new("a")
    t.partition["a"] = 0
    t.states["b"] = ViewerState.new("b")
    t.partition["b"] = 1
    t.loading["w"] = [(1, 5, None)]
    t.waiting = 1
    assert sorted(t.in_partitions({1})) == ["b", "w"]
    assert t.partition_of("w") == 1 and t.partition_of("a") == 0 and t.partition_of("x") is None
    assert t.held("w") and t.held("a") and not t.held("x")
    assert t.waiting_holds() == {1: 5}
    t.remove_many(t.in_partitions({1}))
    assert list(t.states) == ["a"] and not t.loading and t.waiting == 0


def test_a_status_write_waits_for_its_delay_then_is_urgent_once() -> None:
    t = tracked()
    t.status_changed("a", 10.0)
    t.status_changed("b", 11.0)
    t.status_changed("a", 12.0)  # a second change within the delay: the first due time stands
    assert t.status_due == {"a": 10.0, "b": 11.0} and not t.urgent
    assert t.ripe_status_writes(9.9) == 0 and not t.urgent
    assert t.ripe_status_writes(10.0) == 1
    assert t.urgent == {"a"} and t.status_due == {"b": 11.0}
    t.status_changed("a", 20.0)  # already urgent: it goes with the next flush, not later
    assert t.status_due == {"b": 11.0}
    assert t.ripe_status_writes(30.0) == 1 and t.urgent == {"a", "b"} and not t.status_due


def test_no_delay_is_urgent_at_once() -> None:
    t = tracked()
    t.status_changed("a", None)
    assert t.urgent == {"a"} and not t.status_due


def test_a_write_for_any_reason_takes_the_waiting_status_write_with_it() -> None:
    t = tracked()
    t.status_changed("a", 10.0)
    t.status_changed("b", 10.0)
    t.status_changed("c", None)
    t.written({"a", "c"})  # e.g. "a" written at its cadence before its status write was due
    assert t.status_due == {"b": 10.0} and not t.urgent
    assert t.ripe_status_writes(10.0) == 1 and t.urgent == {"b"}
